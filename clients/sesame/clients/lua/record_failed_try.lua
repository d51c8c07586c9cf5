#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the SMS queued before Redis filled up are sent, and what became of each
-- is recorded; bounded by the outbox and each entry's tries.
-- A send of an outbox entry that did not reach the phone (docs/decisions/0033): tried again later, or
-- dead-lettered, in one step. The entry is dead-lettered when its code has expired (EXPIRED: an expired
-- code is never sent again), when the caller allows no more tries (every provider gave its final word:
-- FAILED with that word as the reason), or when the entry was given to dispatchers `allowed` times (its
-- XPENDING delivery count: each take and each claim after a dispatcher died or left it is a try; FAILED,
-- reason max_tries). Whatever ended it, the reason is `unconfirmed` when a try of any of the challenge's
-- messages (all carry its code) may have reached the phone (decision 0096): the challenge's `unconfirmed`
-- field remembers such a try across the tries and the resends (decision 0097). A dead letter records the
-- state and the reason on the challenge (its messages move forward only, _delivery.lua), journals
-- `challenge.dead_letter`, acknowledges and deletes the entry and appends a masked line to the dead letters
-- stream (bounded in length, expiring: never the code, never the whole number); an entry dead-lettered
-- before any send (its code expired or its units missing) in its first hand-out gives back the user's send
-- unit it paid for (_user_unit.lua, decision 0101). Otherwise the entry stays pending, claimed again once
-- idle, and the failed try is journaled.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (its user's {s:<n>} slot), KEYS[3] the outbox
-- stream, KEYS[4] the dead letters stream (both of the challenge's shard: one slot, decision 0044).
-- ARGV[1] consumer group, ARGV[2] entry id, ARGV[3] the failure (a DeliveryFailure reason, or `expired`, `unheld`),
-- ARGV[4] tries allowed (0: none more), ARGV[5] now (unix ms), ARGV[6] dead letters kept at most,
-- ARGV[7] dead letters' lifetime (ms), ARGV[8] queued_at (unix ms), ARGV[9 ..] journal pairs after the event.
-- Returns {0, tries} when the entry stays for another try, {1, tries, reason} when it was dead-lettered,
-- {2, tries, 'missing'} when its challenge no longer exists (the entry is acknowledged and deleted).
--#include _delivery.lua
--#include _tries.lua
--#include _mask.lua
--#include _user_unit.lua
local challenge, journal, outbox, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, entry_id, failure = ARGV[1], ARGV[2], ARGV[3]
local allowed, now = tonumber(ARGV[4]), tonumber(ARGV[5])
-- Failures the dispatcher names before any hand-over (dispatching.UNSENT): the code expired while it waited,
-- or its held units were missing.
local UNSENT = {expired = true, unheld = true}
local tries = tries_of(outbox, group, entry_id)
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts', 'messages',
                     'expires_at', 'phone', 'challenge_id', 'unconfirmed')
if not h[1] then
  -- Purged: nobody left to send it to, nor to tell.
  redis.call('XACK', outbox, group, entry_id)
  redis.call('XDEL', outbox, entry_id)
  return {2, tries, 'missing'}
end
local reason = given_up(failure, now >= tonumber(h[7]), allowed, tries, h[10] == '1')
if UNCONFIRMED[failure] and h[10] ~= '1' then
  redis.call('HSET', challenge, 'unconfirmed', '1')
end
local state = reason == 'expired' and 'expired' or 'failed'
local function journal(event, pairs)
  local entry = {'event', event}
  for i = 9, #ARGV do entry[#entry + 1] = ARGV[i] end
  for _, v in ipairs({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'failure', failure,
                      'tries', tostring(tries), 'attempts', h[5], 'status', h[1]}) do
    entry[#entry + 1] = v
  end
  for _, v in ipairs(pairs) do entry[#entry + 1] = v end
  journal_append(KEYS[2], entry)
end
if not reason then
  journal('challenge.delivery', {'outcome', 'try_failed', 'delivery', redis.call('HGET', challenge, 'delivery')})
  return {0, tries}
end
if UNSENT[failure] then
  unit_back(outbox, group, entry_id, h[2])  -- nothing handed over: the user's unit back (decision 0101)
end
redis.call('XACK', outbox, group, entry_id)
redis.call('XDEL', outbox, entry_id)
redis.call('XADD', dead, 'MAXLEN', '~', ARGV[6], '*',
           'challenge_id', h[9], 'user_id', h[2], 'phone', mask_phone(h[8]), 'state', state, 'reason', reason,
           'failure', failure, 'tries', tostring(tries), 'queued_at', ARGV[8], 'at', tostring(now))
local t = redis.call('TIME')  -- the stream's ids are Redis's clock: trim by it, not by the caller's
local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[7])
redis.call('XTRIM', dead, 'MINID', '~', tostring(math.max(oldest, 0)))
redis.call('PEXPIRE', dead, ARGV[7])
local messages = {}
if h[6] then
  messages = cjson.decode(h[6])
end
note_message(messages, state .. ':' .. entry_id, state)
local delivery = best_delivery(messages, 'queued')  -- the best news over the messages (_delivery.lua)
redis.call('HSET', challenge, 'delivery', delivery, 'messages', cjson.encode(messages))
if delivery == state then
  redis.call('HSET', challenge, 'delivery_reason', reason)
end
journal('challenge.dead_letter', {'outcome', state, 'reason', reason, 'delivery', delivery})
return {1, tries, reason}
