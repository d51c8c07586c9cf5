-- Note what the SMS gateway said about one of a challenge's messages, with its journal entry.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (its user's {s:<n>} slot)
-- ARGV[1] reported state, ARGV[2] provider reference (one per message sent), ARGV[3 ..] journal field/value
-- pairs. Returns 1, or 0 when the challenge does not exist.
--
-- Kannel can call back before sendsms has answered: each message only moves forward, and the challenge shows
-- the best news over its messages (_delivery.lua).
--#include _delivery.lua
local challenge, journal = KEYS[1], KEYS[2]
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts', 'messages')
if not h[1] then
  return 0
end
local state, ref = ARGV[1], ARGV[2]
local messages = {}
if h[6] then
  messages = cjson.decode(h[6])
end
note_message(messages, ref, state)
local delivery = best_delivery(messages, 'pending')
redis.call('HSET', challenge, 'delivery', delivery, 'provider_ref', ref, 'messages', cjson.encode(messages))
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', state,
                    'delivery', delivery, 'attempts', h[5], 'status', h[1]}) do
  entry[#entry + 1] = v
end
journal_append(journal, entry)
return 1
