-- Take one resend of an OPEN, unexpired challenge: within its count and its spacing, atomically, so
-- that concurrent resends cannot send more SMS than the limits allow. Refusals are journaled too.
-- No attempt counter is touched (NIST SP 800-63B: a new send never resets failures). A resend takes one
-- unit of each send budget in the same step (docs/decisions/0014); a spent budget refuses before anything
-- is written, and spends no resend.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] its refusal counts (its user's {s:<n>}
-- slot), KEYS[4 .. 3+b] the send budgets (the user's in the same slot; the number's, caller's and global in
-- their {sb:<kind>:<key>} slots: this script spans those on purpose, docs/decisions/0019), KEYS[4+b] the SMS
-- outbox stream, where a resend's SMS is queued; KEYS[5+b], when given, the Resend's request id's claim (a
-- hash in the user's slot: the challenge, its resends after this one, the hold's name and the SMS's outbox
-- entry; expiring with the challenge: decision 0065)
-- While the challenge's user is blocked after wrong codes in a row, no resend is taken, no unit charged and
-- nothing is sent (the block is read here, in the step that would charge, not before it).
-- ARGV[1] request time (unix ms), ARGV[2] the name of the user hash less the user id, in the challenge's
-- place (the script reads the block of the user the challenge names), ARGV[3] b = count of budgets,
-- ARGV[4 .. 3+2b] each budget's limit and window (ms), ARGV[4+2b] the name of the hold of the SMS's other
-- units (take_send_units.lua, decision 0046; carried in the outbox entry), which names its user's unit too
-- (decision 0101; '' an unnamed unit, never given back), ARGV[5+2b ..] journal pairs
-- Returns {'resent', hgetall}, {'too_soon', wait_ms}, {'exhausted'}, {'closed'}, {'not_found'},
-- {'user_blocked', wait_ms, user id} or {'budget', budget index (0-based), wait_ms}; with a claim, also
-- {'earlier', hgetall, resends after it, its hold's name, 1 while its SMS is in the outbox else 0} (the
-- request id's resend, while the challenge is open: nothing written, journaled or queued) or
-- {'other_challenge'} (the request id was claimed on another challenge: nothing written).
--#include _send_budgets.lua
--#include _out_of_memory.lua
--#include _refusal.lua
--#include _user_changes.lua
local challenge, journal, refusals = KEYS[1], KEYS[2], KEYS[3]
local budgets = tonumber(ARGV[3])
local h = redis.call('HMGET', challenge, 'status', 'expires_at', 'max_resends', 'resends', 'resend_spacing_ms',
                     'last_sent_at', 'user_id', 'client_id', 'op_digest', 'attempts', 'phone', 'challenge_id',
                     'user_changes', 'created_at')
local status = h[1]
if not status then
  return {'not_found'}
end
local now, resends = tonumber(ARGV[1]), tonumber(h[4])
local next_send_at = tonumber(h[6]) + tonumber(h[5])
local u = redis.call('HMGET', ARGV[2] .. h[7], 'status', 'phone', 'blocked_until', 'status_changes', 'phone_changes',
                     'status_changed_at', 'phone_changed_at')
local blocked_until = tonumber(u[3] or '0')
if not blocked_until then
  return redis.error_reply('CORRUPT user record')  -- never read as no block (as record_verification.lua)
end
-- Closed too once the user is no longer active or the number changed, before that change's voiding ran:
-- no code goes to a number that is no longer the secure one, nor after a change undone since the challenge
-- opened (as record_verification.lua).
local status_moved, phone_moved = moved_since(h[13], h[14], u[4], u[5], u[6], u[7])
local stale = u[1] and (u[1] ~= 'active' or u[2] ~= h[11] or status_moved or phone_moved)
local live = status == 'open' and now < tonumber(h[2])
local open = live and not stale
local claim = KEYS[5 + budgets]
if claim then
  -- A retry of a resend whose answer was lost is answered by that resend, before the spacing that would
  -- refuse it: a retry is not a second resend, and sends no second SMS.
  local c = redis.call('HMGET', claim, 'challenge', 'resends', 'hold', 'entry')
  if c[1] and c[1] ~= h[12] then
    return {'other_challenge'}
  elseif c[1] and open then
    local queued = #redis.call('XRANGE', KEYS[4 + budgets], c[4], c[4]) > 0
    return {'earlier', redis.call('HGETALL', challenge), c[2], c[3], queued and 1 or 0}
  end
end
local outcome
if not live then
  outcome = 'closed'
elseif now < blocked_until then
  outcome = 'user_blocked'  -- said before a change since the challenge opened, which a block is (0013)
elseif not open then
  outcome = 'closed'
elseif resends >= tonumber(h[3]) then
  outcome = 'exhausted'
elseif now < next_send_at then
  outcome = 'too_soon'
else
  local sends, limits = {unpack(KEYS, 4, 3 + budgets)}, {unpack(ARGV, 4, 3 + 2 * budgets)}
  local refusal = budget_refusal(sends, limits, now)
  if refusal then
    return {'budget', refusal[2], refusal[3]}
  end
  -- Named after the SMS: its hold's name, which its outbox entry carries (decision 0101).
  local hold = ARGV[4 + 2 * budgets]
  -- The budgets' ZREMRANGEBYSCORE frees: out of memory, the resend would pass whole (decision 0111).
  refuse_out_of_memory(challenge)
  take_budgets(sends, limits, now, hold ~= '' and hold or nil)
  outcome = 'resent'
  resends = redis.call('HINCRBY', challenge, 'resends', 1)
  redis.call('HSET', challenge, 'last_sent_at', ARGV[1])
  -- The SMS, queued in the same step (never the code: docs/decisions/0025).
  local outbox = KEYS[4 + budgets]
  if redis.call('EXISTS', outbox) == 0 then
    redis.call('XGROUP', 'CREATE', outbox, 'dispatchers', '0', 'MKSTREAM')  -- the first SMS ever queued
  end
  local sms = redis.call('XADD', outbox, '*', 'challenge_id', h[12], 'send', 'resend', 'queued_at', ARGV[1],
                         'hold', hold)
  if claim then
    redis.call('HSET', claim, 'challenge', h[12], 'resends', resends, 'hold', hold, 'entry', sms)
    expire_at(claim, h[2], now)
  end
end
-- A refusal is journaled the first time of its kind, then only counted (see record_verification.lua).
local journaled = true
if outcome ~= 'resent' then
  local kind = 'challenge.resend:' .. outcome
  journaled = count_refusal(refusals, challenge, kind, ARGV[1]) == 1
end
local entry = {}
for i = 5 + 2 * budgets, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[7], 'client_id', h[8], 'op_digest', h[9], 'outcome', outcome,
                    'attempts', h[10], 'status', status, 'resends', resends}) do
  entry[#entry + 1] = v
end
if journaled then
  journal_append(journal, entry)
end
if outcome == 'resent' then
  return {outcome, redis.call('HGETALL', challenge)}
elseif outcome == 'too_soon' then
  return {outcome, next_send_at - now}
elseif outcome == 'user_blocked' then
  return {outcome, blocked_until - now, h[7]}
end
return {outcome}
