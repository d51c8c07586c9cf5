-- Note what the SMS gateway said about one of a challenge's messages, with its journal entry.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (its user's {u:<t>} slot)
-- ARGV[1] reported state, ARGV[2] provider reference (one per message sent), ARGV[3 ..] journal field/value
-- pairs. Returns 1, or 0 when the challenge does not exist.
--
-- Reports arrive late, twice, or before the sender has recorded its own SENT (Kannel can call back before
-- sendsms has answered), so each message only moves forward: pending < sent < delivered | failed | expired,
-- the last three final. The challenge's state is the best news over its messages (all carry the same code):
-- delivered if any was, else sent if any is in flight, else expired, else failed (docs/decisions/0006,
-- 0030): a failure report from a provider failed over from never hides another provider's success.
local challenge, journal = KEYS[1], KEYS[2]
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts', 'messages')
if not h[1] then
  return 0
end
local state, ref = ARGV[1], ARGV[2]
local rank = {pending = 0, sent = 1, delivered = 2, failed = 2, expired = 2}
local messages = {}
if h[6] then
  messages = cjson.decode(h[6])
end
local before = messages[ref]
if before == nil or rank[state] > rank[before] then
  messages[ref] = state
end
local delivery = 'pending'
for _, s in pairs(messages) do
  if s == 'delivered' then
    delivery = 'delivered'
  elseif s == 'sent' and delivery ~= 'delivered' then
    delivery = 'sent'
  elseif s == 'expired' and (delivery == 'pending' or delivery == 'failed') then
    delivery = 'expired'
  elseif s == 'failed' and delivery == 'pending' then
    delivery = 'failed'
  end
end
redis.call('HSET', challenge, 'delivery', delivery, 'provider_ref', ref, 'messages', cjson.encode(messages))
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', state,
                    'delivery', delivery, 'attempts', h[5], 'status', h[1]}) do
  entry[#entry + 1] = v
end
journal_append(journal, entry)
return 1
