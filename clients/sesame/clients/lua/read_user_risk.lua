-- Read a user and its risk memory in one step, with the memory's version (docs/risk.md, decision 0032): what
-- StartChallenge's rules need when this worker holds no recent copy of them.
-- KEYS[1] the user hash, KEYS[2..7] the memory's parts (see _risk_memory.lua): all in the user's {s:<n>} slot.
-- Returns {} when there is no such user, else {user fields/values, then for each sorted set its member/score
-- pairs, then the amounts, then the version}.
--#include _risk_memory.lua
local reply, version = risk_read(KEYS[1], {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]})
if not reply then
  return {}
end
reply[#reply + 1] = version
return reply
