-- Lift a block after wrong codes in a row (RTS Art. 4(3)(b)), the back office's decision: one atomic step
-- with its journal entry. The wrong codes in a row and the block's end are cleared; `blocks` (blocks in a
-- row) is kept, so that a user who goes on guessing after the unblock is blocked longer, as without it (a
-- right code resets it, as always). A revoked user is refused; nothing to lift is 'unchanged'. A request
-- id applied before answers the user as it is now, without a new entry. The entry says what was lifted.
-- KEYS[1] user hash, KEYS[2] user journal stream, KEYS[3] applied request ids (same {s:<n>} slot)
-- ARGV[1] request id, ARGV[2] its fingerprint, ARGV[3] time (unix ms), ARGV[4..6] the no-op limits
-- (_noops.lua), ARGV[7 ..] journal field/value pairs
-- Returns {'unblocked'|'unchanged'|'replayed', hgetall}, {'refused'}, {'not_found'}, {'request_conflict'} or
-- {'noops_full', ms}. 'unchanged' and 'refused' are journaled as no-ops (_noops.lua: the first few of the
-- user's hour, then counted), and the request id of an 'unchanged' remembered for a bounded time (decision
-- 0054); with no room left for it, the call is refused, nothing journaled (decision 0150).
--#include _journal_hourly.lua
--#include _noops.lua
local user, journal, changes = KEYS[1], KEYS[2], KEYS[3]
local request_id, fingerprint, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local limits = noop_limits(4)
if redis.call('EXISTS', user) == 0 then
  return {'not_found'}
end
local seen = lookup_applied(changes, request_id, now, limits)
if seen == fingerprint then
  return {'replayed', redis.call('HGETALL', user)}
elseif seen then
  return {'request_conflict'}
end
local h = redis.call('HMGET', user, 'status', 'failures', 'blocks', 'blocked_until')
local failures, blocked_until = tonumber(h[2] or '0') or 0, tonumber(h[4] or '0') or 0
local outcome = 'unchanged'
if h[1] == 'revoked' then
  outcome = 'refused'
elseif failures > 0 or blocked_until > 0 then
  outcome = 'unblocked'
  redis.call('HSET', user, 'failures', 0, 'blocked_until', 0)
else
  -- Nothing to lift: its id is remembered, or, without room, the call refused (its retry, taken as new,
  -- would lift a block made since: decision 0150).
  local room = noop_room(changes, now, limits)
  if room ~= true then
    return {'noops_full', room}
  end
end
local entry = {}
for i = 7, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'outcome', outcome, 'status', h[1], 'failures', failures, 'blocks', h[3] or '0',
                    'blocked_until', blocked_until}) do
  entry[#entry + 1] = v
end
if outcome == 'unblocked' then
  journal_append(journal, entry)
else
  journal_noop(user, journal, entry, now, limits)
end
if outcome == 'refused' then
  return {outcome}
elseif outcome == 'unchanged' then
  remember_noop(changes, request_id, fingerprint, now)
else
  redis.call('HSET', changes, request_id, fingerprint)
end
return {outcome, redis.call('HGETALL', user)}
