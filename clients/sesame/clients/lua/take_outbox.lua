-- Give outbox entries to one dispatcher with the challenge each carries the code of, in one step (decision
-- 0040): the entries no consumer was given yet (XREADGROUP '>'), or those pending with any consumer for
-- longer than a timeout (XAUTOCLAIM from the start: their dispatcher died), each with its challenge hash as
-- stored now, so that a dispatcher needs no read of its own before it sends. A script cannot block: the
-- dispatcher waits for new entries with a blocking XREADGROUP of its own when this finds none.
-- KEYS[1] the outbox stream of one shard (`<place>:outbox`); each entry's challenge is in the same place
-- (its user's shard queued it there), `<place>:ch:<id>`, so the script touches one slot (decision 0044).
-- ARGV[1] the consumer group, ARGV[2] the consumer, ARGV[3] how many at most, ARGV[4] '' for new entries,
-- else the idle time (ms) past which pending entries are claimed.
-- Returns {'nogroup'} when the stream lost its group; else {'taken', then for each entry its id, its fields
-- and its challenge's fields (empty once the challenge was purged)}: none before the shard's first SMS (no
-- stream yet). An entry deleted while pending is left out (nothing to send).
local outbox, group, consumer, count, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local place = string.sub(outbox, 1, #outbox - #':outbox')
if redis.call('EXISTS', outbox) == 0 then
  return {'taken'}  -- no SMS was ever queued in this shard (the first one makes the stream and the group)
end
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
    reply[#reply + 1] = entry[1]
    reply[#reply + 1] = fields
    -- As Keyspace.challenge: the challenge is in its user's place, this outbox's; an override's notice
    -- names none (decision 0041).
    reply[#reply + 1] = challenge_id == '' and {} or redis.call('HGETALL', place .. ':ch:' .. challenge_id)
  end
end
return reply
