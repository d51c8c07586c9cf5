-- Give outbox entries to one dispatcher with the challenge each carries the code of, in one step (decision
-- 0040): the entries no consumer was given yet (XREADGROUP '>'), or those pending with any consumer for
-- longer than a timeout (XAUTOCLAIM from the start: their dispatcher died), each with its challenge hash as
-- stored now, so that a dispatcher needs no read of its own before it sends. A script cannot block: the
-- dispatcher waits for new entries with a blocking XREADGROUP of its own when this finds none.
-- KEYS[1] the outbox stream ({outbox}); the challenges are named from their ids in their users' {u:<t>}
-- places, read across slots as record_dispatch.lua writes across them (one Redis, decision 0019).
-- ARGV[1] the consumer group, ARGV[2] the consumer, ARGV[3] how many at most, ARGV[4] '' for new entries,
-- else the idle time (ms) past which pending entries are claimed, ARGV[5] the key prefix.
-- Returns {'nogroup'} when the stream or its group does not exist yet; else {'taken', then for each entry
-- its id, its fields and its challenge's fields (empty once the challenge was purged)}. An entry deleted
-- while pending is left out (nothing to send).
local outbox, group, consumer, count, idle, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local entries
if idle == '' then
  local read = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', outbox, '>')
  if type(read) == 'table' and read.err then
    if string.find(read.err, 'NOGROUP', 1, true) then
      return {'nogroup'}
    end
    return redis.error_reply(read.err)
  end
  entries = read and read[1][2] or {}
else
  local claimed = redis.pcall('XAUTOCLAIM', outbox, group, consumer, idle, '0-0', 'COUNT', count)
  if type(claimed) == 'table' and claimed.err then
    if string.find(claimed.err, 'NOGROUP', 1, true) then
      return {'nogroup'}
    end
    return redis.error_reply(claimed.err)
  end
  entries = claimed[2]
end
local reply = {'taken'}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if fields and #fields > 0 then
    local challenge_id = ''
    for i = 1, #fields, 2 do
      if fields[i] == 'challenge_id' then challenge_id = fields[i + 1] end
    end
    -- As Keyspace.challenge: the place is the user tag the id ends with ('-' for an id without one).
    local tag = string.match(challenge_id, '%.u([0-9a-f]+)$')
    if not tag or #tag ~= 16 then tag = '-' end
    reply[#reply + 1] = entry[1]
    reply[#reply + 1] = fields
    reply[#reply + 1] = redis.call('HGETALL', prefix .. ':{u:' .. tag .. '}:ch:' .. challenge_id)
  end
end
return reply
