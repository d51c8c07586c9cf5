-- Read a user and its risk memory in one step (docs/risk.md): the memory as Start's step evaluates the rules
-- on it (decision 0045), for the Python evaluator's path and the tests.
-- KEYS[1] the user hash, KEYS[2..7] the memory's parts (see _risk_memory.lua): all in the user's {u:<t>} slot.
-- Returns {} when there is no such user, else {user fields/values, then for each sorted set its member/score
-- pairs, then the amounts}.
--#include _risk_memory.lua
return risk_read(KEYS[1], {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]}) or {}
