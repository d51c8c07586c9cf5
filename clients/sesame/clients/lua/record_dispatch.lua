-- Settle one outbox entry: note what the SMS gateway said about the message (as record_delivery.lua does,
-- with its journal entry) and acknowledge and delete the entry, in one step: once the gateway's answer is
-- recorded the entry is gone, so that no dispatcher sends it again; an entry whose dispatcher died before
-- this step is claimed by another one and sent again (at least once: docs/decisions/0025).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (its user's {s:<n>} slot), KEYS[3] the outbox stream
-- of the challenge's shard (the same slot: decision 0044).
-- ARGV[1] the consumer group, ARGV[2] the entry id, ARGV[3] the message's state (sent; expired when the
-- challenge was closed before it left, or was purged: a send that failed or a code that expired is
-- record_failed_try.lua's, docs/decisions/0033), ARGV[4] provider reference, ARGV[5 ..] journal pairs.
-- Returns 1, or 0 when the challenge no longer exists (the entry is acknowledged all the same).
--#include _delivery.lua
local challenge, journal, outbox = KEYS[1], KEYS[2], KEYS[3]
redis.call('XACK', outbox, ARGV[1], ARGV[2])
redis.call('XDEL', outbox, ARGV[2])
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts', 'messages')
if not h[1] then
  return 0
end
local state, ref = ARGV[3], ARGV[4]
local messages = {}
if h[6] then
  messages = cjson.decode(h[6])
end
local key = ref
if key == '' then
  key = state .. ':' .. ARGV[2]  -- a message the gateway never took has no reference of its own
end
note_message(messages, key, state)
local delivery = best_delivery(messages, 'queued')  -- the best news over the messages (_delivery.lua)
redis.call('HSET', challenge, 'delivery', delivery, 'provider_ref', ref, 'messages', cjson.encode(messages))
local entry = {}
for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', state,
                    'delivery', delivery, 'attempts', h[5], 'status', h[1]}) do
  entry[#entry + 1] = v
end
journal_append(journal, entry)
return 1
