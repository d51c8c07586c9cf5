#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the SMS queued before Redis filled up are sent, and what became of each
-- is recorded; bounded by the outbox, which nothing grows out of memory but a Verify's notice.
-- Settle one outbox entry: note what the SMS gateway said about the message (as record_delivery.lua does,
-- with its journal entry) and acknowledge and delete the entry, in one step: once the gateway's answer is
-- recorded the entry is gone, so that no dispatcher sends it again; an entry whose dispatcher died before
-- this step is claimed by another one and sent again (at least once: docs/decisions/0025).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (its user's {s:<n>} slot), KEYS[3] the outbox stream
-- of the challenge's shard (the same slot: decision 0044).
-- ARGV[1] the consumer group, ARGV[2] the entry id, ARGV[3] the message's state (sent; expired when the
-- challenge was closed before it left, or was purged: a send that failed or a code that expired is
-- record_failed_try.lua's, docs/decisions/0033; expired, the user's send unit it paid for is given back when
-- this is the entry's first hand-out, _user_unit.lua, decision 0101), ARGV[4] provider reference, ARGV[5]
-- the attempt (the take or claim that gave the entry to this dispatcher, '' none), ARGV[6 ..] journal pairs.
-- Returns 1, 0 when the challenge no longer exists (the entry is acknowledged all the same), or 2 when this
-- attempt's send was recorded already: the step ran and its answer was lost (a connection cut, a Redis
-- restart), and the dispatcher asked again (decision 0055). Nothing is written then, so that a send has one
-- `challenge.delivery` entry (decision 0056). The challenge keeps, per entry, the attempt whose send was
-- recorded (`dispatched`): another attempt of the same entry (claimed from a dispatcher thought dead, which
-- sent it again) is another send, recorded and journaled.
--#include _delivery.lua
--#include _user_unit.lua
local challenge, journal, outbox = KEYS[1], KEYS[2], KEYS[3]
local entry_id, attempt = ARGV[2], ARGV[5]
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts', 'messages',
                     'dispatched')
if h[1] and ARGV[3] == 'expired' then
  unit_back(outbox, ARGV[1], entry_id, h[2])  -- never handed over: the user's unit back (decision 0101)
end
redis.call('XACK', outbox, ARGV[1], entry_id)
redis.call('XDEL', outbox, entry_id)
if not h[1] then
  return 0
end
local dispatched = h[7] and cjson.decode(h[7]) or {}
if attempt ~= '' and dispatched[entry_id] == attempt then
  return 2
end
local state, ref = ARGV[3], ARGV[4]
local messages = {}
if h[6] then
  messages = cjson.decode(h[6])
end
local key = ref
if key == '' then
  key = state .. ':' .. entry_id  -- a message the gateway never took has no reference of its own
end
note_message(messages, key, state)
local delivery = best_delivery(messages, 'queued')  -- the best news over the messages (_delivery.lua)
local noted = {'delivery', delivery, 'provider_ref', ref, 'messages', cjson.encode(messages)}
if attempt ~= '' then
  dispatched[entry_id] = attempt
  noted[#noted + 1] = 'dispatched'
  noted[#noted + 1] = cjson.encode(dispatched)
end
redis.call('HSET', challenge, unpack(noted))  -- one HSET (decision 0061)
local entry = {}
for i = 6, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', state,
                    'delivery', delivery, 'attempts', h[5], 'status', h[1]}) do
  entry[#entry + 1] = v
end
journal_append(journal, entry)
return 1
