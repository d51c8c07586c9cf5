#!lua flags=allow-oom
-- Runs out of memory (maxmemory, noeviction): a report Kannel or the SMSC brings while Redis is full is
-- recorded, not refused, since neither brings it again for long (Kannel by default never: decision 0111);
-- what it writes is bounded by the messages already sent and the bounds below.
-- Note what the SMS gateway said about one of a challenge's messages, with its journal entry.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (its user's {s:<n>} slot)
-- ARGV[1] reported state, ARGV[2] provider reference (one per message sent), ARGV[3 ..] journal field/value
-- pairs. Returns 1 when the report moved its message forward, 2 when it moved nothing (a repeat, a late one,
-- journaled or not: see below), or 0 when the challenge does not exist. Only the 1s are counted (Kannel's
-- route, the SMPP receipts): a replayed report must not read on the dashboard as another SMS delivered or
-- failed.
--
-- Kannel can call back before sendsms has answered: each message only moves forward, and the challenge shows
-- the best news over its messages (_delivery.lua).
-- What the route lets in is bounded, so that a Kannel replaying its reports (or whoever holds its token)
-- cannot grow the challenge or the sealed journal without end: a report that moves nothing (a repeat, a late
-- one) is journaled for the first MAX_IGNORED such reports of the challenge only; a reference beyond the
-- challenge's MAX_MESSAGES is none of its messages (1 + 3 resends, a few providers each) and is dropped.
--#include _delivery.lua
local MAX_MESSAGES, MAX_IGNORED = 32, 8
local challenge, journal = KEYS[1], KEYS[2]
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts', 'messages',
                    'ignored_reports')
if not h[1] then
  return 0
end
local state, ref = ARGV[1], ARGV[2]
local messages = {}
if h[6] then
  messages = cjson.decode(h[6])
end
local before = messages[ref]
if before == nil then
  local known = 0
  for _ in pairs(messages) do known = known + 1 end
  if known >= MAX_MESSAGES then
    return 2
  end
end
note_message(messages, ref, state)
local moved = messages[ref] ~= before
if not moved then
  local ignored = tonumber(h[7] or '0')
  if ignored >= MAX_IGNORED then
    return 2
  end
  redis.call('HSET', challenge, 'ignored_reports', ignored + 1)
end
local delivery = best_delivery(messages, 'pending')
redis.call('HSET', challenge, 'delivery', delivery, 'provider_ref', ref, 'messages', cjson.encode(messages))
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', state,
                    'delivery', delivery, 'attempts', h[5], 'status', h[1]}) do
  entry[#entry + 1] = v
end
journal_append(journal, entry)
if moved then
  return 1
end
return 2
