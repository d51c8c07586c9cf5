#!lua flags=allow-oom
-- Runs out of memory (decision 0111): a challenge voided by a change of its user does not stay usable while
-- Redis is full.
-- Void one of a user's pending challenges after a change of the user (suspended, revoked, another number,
-- blocked): an OPEN challenge is voided (even its right code answers VOIDED from then on); an id not
-- opened yet is spent, so that its late opener fails. Idempotent: a closed challenge is left as it is.
-- Only what was opened before the change that calls for the voiding: the change's step ran before this one,
-- maybe long before (a retry of its request finishing an interrupted run, decision 0010), and the user may
-- have opened challenges since (reinstated, or on its new number): those are left open. The opening step
-- kept the user's change counts it read (`user_changes`, decision 0056), the change's step recorded the
-- counts it left (ARGV[2]): "before" is the order of the steps, not a time. A challenge opened before the
-- counts existed is voided.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] the user's pending index, which a closed
-- challenge leaves (decision 0093; all in its user's {s:<n>} slot); when a Start whose other send units were
-- refused voids what its step opened (decision 0046): KEYS[4] the user's send budget, whose unit the step took
-- is given back (the member named by the challenge id, decision 0101: found once, so that its SMS's entry,
-- dropped later by the dispatcher, gives back nothing more; a unit taken before 0101 is not found), and
-- KEYS[5] (optional) the Start's request id claim (the same slot), dropped when it names this challenge, so
-- that a retry of its request id starts afresh
-- ARGV[1] the user whose index named it, ARGV[2] the user's change counts right after the change
-- ('<status>:<number>'; '' for whatever is open: a block, a revocation, the Start's own challenge),
-- ARGV[3 ..] journal field/value pairs (head, reason, provenance)
-- Returns 'voided', 'closed', 'gone' (purged after its retention), 'foreclosed' or 'opened_after' (left as
-- it is, unjournaled).
--#include _user_changes.lua
local challenge, journal = KEYS[1], KEYS[2]
local function append(fields)
  local entry = {}
  for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
  for _, v in ipairs(fields) do entry[#entry + 1] = v end
  journal_append(journal, entry)
end
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts',
                     'user_changes')
if not h[1] then
  if redis.call('EXISTS', journal) == 1 or redis.call('EXISTS', journal .. ':tail') == 1 then
    return 'gone'
  end
  append({'user_id', ARGV[1], 'outcome', 'foreclosed'})
  return 'foreclosed'
end
if h[1] ~= 'open' then
  redis.call('ZREM', KEYS[3], redis.call('HGET', challenge, 'challenge_id'))
  return 'closed'
end
local status_after, phone_after = string.match(ARGV[2], '^(%d+):(%d+)$')
if status_after then
  -- Opened before the change when the change moved a count past the one the challenge opened under.
  local status_before, phone_before = changes_since(h[6], status_after, phone_after)
  if status_before == false and phone_before == false then
    return 'opened_after'
  end
end
redis.call('HSET', challenge, 'status', 'voided')
local challenge_id = redis.call('HGET', challenge, 'challenge_id')
redis.call('ZREM', KEYS[3], challenge_id)
if KEYS[4] then
  redis.call('ZREM', KEYS[4], challenge_id)
end
if KEYS[5] and redis.call('GET', KEYS[5]) == challenge_id then
  redis.call('DEL', KEYS[5])
end
append({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', 'voided', 'attempts', h[5],
        'status', 'voided'})
return 'voided'
