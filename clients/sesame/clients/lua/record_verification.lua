#!lua flags=allow-oom
-- Runs out of memory (maxmemory, noeviction): a customer holding a code sent before Redis filled up gets its
-- decision, and what it writes is bounded by the challenges already open (decision 0111).
-- Decide one attempt and carry it over to the challenge's user, in one atomic step: exactly one concurrent
-- caller can see OPEN and turn it VERIFIED, and no code of a blocked user is evaluated (RTS Art. 4(3)(b):
-- never more than five wrong codes in a row), because the block is read where the failure is counted.
-- One slot: the challenge lives in its user's place {s:<n>} (docs/decisions/0019), so the caller names no
-- user; the user is the one the stored challenge names, and its keys are named here from that user id under
-- the challenge's own tag (the same slot by construction; a forged tag finds no challenge).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] the challenge's refusal counts,
-- KEYS[4] the SMS outbox of the challenge's shard (the same slot, decision 0044: a notice is queued with the
-- change it reports, docs/decisions/0033)
-- ARGV[1] attempt time (unix ms), ARGV[2] submitted op_digest (hex), ARGV[3] '1' if the code matched,
-- ARGV[4], ARGV[5] the names of the user hash and the user journal less the user id, in the challenge's
-- place, ARGV[6] wrong codes in a row that block, ARGV[7] first block (ms), ARGV[8] longest block (ms),
-- ARGV[9] attempt time (ISO, for the user's journal), ARGV[10], ARGV[11] the jti and kid of the proof that a
-- VERIFIED decision will carry ('' when none can be signed now; decision 0026), ARGV[12] the notice a
-- VERIFIED decision queues ('' none, `beneficiary_added`; decision 0033), ARGV[13] the name of the user's
-- risk keys less the user id, in the challenge's place ('': nothing to remember), ARGV[14..27] what a VERIFIED
-- decision teaches that memory (risk_remember's 14 arguments, _risk_memory.lua; decision 0032), ARGV[28] the
-- name of the user's pending index less the user id, in the challenge's place, ARGV[29] the right code's
-- witness, journaled with a VERIFIED decision only (decision 0167), ARGV[30 ..] challenge journal field/value
-- pairs (event, time, id, request context). A block that starts queues the
-- `user_blocked` alert.
-- Returns {result, hgetall, blocked_until} (blocked_until: unix ms when this attempt started a block, else
-- 0); or {'not_found'}.
--#include _notice.lua
--#include _risk_memory.lua
--#include _refusal.lua
--#include _user_changes.lua
local challenge, journal, refusals = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', challenge, 'status', 'expires_at', 'op_digest', 'max_attempts', 'user_id', 'client_id',
                     'challenge_id', 'phone', 'attempts', 'user_changes', 'created_at')
local status = h[1]
if not status then
  return {'not_found'}
end
local user, user_journal = ARGV[4] .. h[5], ARGV[5] .. h[5]
-- With the counts a wrong code or a right one reads below: one HMGET of the user (decision 0061).
local u = redis.call('HMGET', user, 'status', 'phone', 'blocked_until', 'failures', 'blocks', 'status_changes',
                     'phone_changes', 'status_changed_at', 'phone_changed_at')
local known_user = u[1] ~= false
-- A record this script cannot read is refused before any write, never read as the permissive case: a status
-- it does not know read as open, a block not a number as none (an outside audit edited both; a rolling
-- upgrade adding a status would do the same).
local KNOWN = {open = true, verified = true, voided = true, cancelled = true, locked = true}
local counts = {u[3], u[4], u[5]}
for i = 1, 3 do
  if counts[i] and not tonumber(counts[i]) then
    return redis.error_reply('CORRUPT user record')
  end
end
if not KNOWN[status] or not tonumber(h[9] or '0') then
  return redis.error_reply('CORRUPT challenge record')
end
local blocked_until = tonumber(u[3] or '0')
-- A suspension, a revocation or a change of number voids the user's pending challenges in a step after its
-- own: a code is never taken in between, nor left usable if that step never ran, even once the change is
-- undone (a reinstatement, the number changed back: counted since the challenge opened, as take_outbox.lua).
local status_moved, phone_moved = moved_since(h[10], h[11], u[6], u[7], u[8], u[9])
local stale = known_user and (u[1] ~= 'active' or u[2] ~= h[8] or status_moved or phone_moved)
local result
-- Terminal states answer first and do not count: a closed challenge never reopens.
if status == 'verified' then
  result = 'already_used'
elseif status == 'voided' or status == 'cancelled' then
  result = 'voided'
elseif status == 'locked' then
  result = 'locked'
elseif now >= tonumber(h[2]) then
  result = 'expired'
elseif now < blocked_until then
  -- The user is blocked: the submitted code is neither compared nor counted, even a right one. Said before
  -- a change since the challenge opened, which the block itself is (its callers learn the block).
  result = 'user_blocked'
elseif stale then
  status, result = 'voided', 'voided'
  redis.call('HSET', challenge, 'status', status)
else
  -- Counted before the outcome is known: a wrong code, a foreign operation and a success all spend one.
  local attempts = redis.call('HINCRBY', challenge, 'attempts', 1)
  h[9] = attempts
  if ARGV[2] ~= h[3] then
    status, result = 'voided', 'operation_mismatch'  -- RTS Art. 5(1)(d): the code is void from now on
  elseif ARGV[3] ~= '1' then
    result = 'wrong_code'
    if attempts >= tonumber(h[4]) then status = 'locked' end
  else
    status, result = 'verified', 'verified'
  end
  redis.call('HSET', challenge, 'status', status)
end
if status ~= 'open' then
  -- Closed (here or before): not in the user's index of open challenges, which Start's risk step reads (0093).
  redis.call('ZREM', ARGV[28] .. h[5], h[7])
end
-- A refusal changes nothing and anyone may repeat it: the first of each kind is journaled, the others only
-- counted (a bounded hash next to the journal), so that the journal cannot be grown from outside.
local REFUSED = {already_used = true, voided = true, locked = true, expired = true, user_blocked = true}
if REFUSED[result] then
  local kind = 'challenge.verification:' .. result
  if count_refusal(refusals, challenge, kind, ARGV[1]) > 1 then
    return {result, redis.call('HGETALL', challenge), 0}
  end
end
local entry = {}
for i = 30, #ARGV do entry[#entry + 1] = ARGV[i] end
local attempts = h[9]  -- as counted above, or as stored (false: never counted, as HGET answered)
for _, v in ipairs({'user_id', h[5], 'client_id', h[6], 'outcome', result, 'attempts', attempts, 'status', status}) do
  entry[#entry + 1] = v
end
if result == 'verified' then
  entry[#entry + 1] = 'witness'
  entry[#entry + 1] = ARGV[29]
end
journal_append(journal, entry)
-- The proof is signed after this step and its JWS is not written: the entry that names it (jti, key) is, with
-- the decision, so the journal fixes every byte it signs; GetProof signs the same claims again (0026).
if result == 'verified' and ARGV[10] ~= '' then
  journal_append(journal, {'event', 'challenge.proof', 'at', ARGV[9], 'challenge_id', h[7], 'user_id', h[5],
             'client_id', h[6], 'op_digest', h[3], 'outcome', 'issued', 'attempts', attempts, 'status', status,
             'jti', ARGV[10], 'kid', ARGV[11]})
end

-- The user's count of wrong codes in a row: only a wrong code counts, only a right one resets it.
local function journal_user(event, outcome, failures, blocks, until_ms)
  journal_append(user_journal, {'event', event, 'at', ARGV[9], 'user_id', h[5],
             'challenge_id', h[7], 'outcome', outcome,
             'failures', failures, 'blocks', blocks, 'blocked_until', until_ms})
end
local started_block = 0
if known_user and result == 'wrong_code' then
  local failures = redis.call('HINCRBY', user, 'failures', 1)
  local blocks = tonumber(u[5] or '0')
  local outcome, until_ms = 'counted', 0
  if failures >= tonumber(ARGV[6]) then
    outcome = 'blocked'
    blocks = redis.call('HINCRBY', user, 'blocks', 1)
    -- Doubling, capped; computed on integers so that no float reaches the hash.
    local first, longest = tonumber(ARGV[7]), tonumber(ARGV[8])
    local length = first
    for _ = 2, blocks do
      length = math.min(longest, length * 2)
    end
    length = math.min(longest, length)
    until_ms, started_block, failures = now + length, now + length, 0
    redis.call('HSET', user, 'failures', 0, 'blocked_until', until_ms)
    -- A change of the user's standing, as a suspension is: every challenge open now is void from here on, by
    -- construction (decision 0013), not only once the voiding steps after this one have run: an unblock
    -- landing between them left their codes verifying (an outside audit).
    redis.call('HINCRBY', user, 'status_changes', 1)
    queue_notice(KEYS[4], h[7], 'user_blocked', ARGV[1], until_ms)  -- RTS Art. 4(4): the payer is alerted
  end
  journal_user('user.failed_attempt', outcome, failures, blocks, until_ms)
elseif known_user and result == 'verified' then
  if ARGV[12] ~= '' then
    queue_notice(KEYS[4], h[7], ARGV[12], ARGV[1], 0)
  end
  if (tonumber(u[4] or '0') or 0) ~= 0 or (tonumber(u[5] or '0') or 0) ~= 0 or (tonumber(u[3] or '0') or 0) ~= 0 then
    redis.call('HSET', user, 'failures', 0, 'blocks', 0, 'blocked_until', 0)
    journal_user('user.successful_attempt', 'reset', 0, 0, 0)
  end
end
if known_user and result == 'verified' and ARGV[13] ~= '' then
  -- The risk memory learns in the decision's step: a right code is one round trip (decision 0032).
  local parts = risk_parts(ARGV[13], h[5])
  local lesson = {}
  for i = 14, 27 do lesson[#lesson + 1] = ARGV[i] end
  risk_remember(parts, lesson)
end
return {result, redis.call('HGETALL', challenge), started_block}
