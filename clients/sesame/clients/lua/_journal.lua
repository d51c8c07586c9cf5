-- Journal appends (docs/decisions/0027), put in front of every script: every journal entry goes through
-- journal_append. It adds to the entry, as its last fields:
--   seq   its number in its stream (1, 2, ...), from the stream's count of entries ever added, which an XDEL
--         does not lower: a deleted entry leaves a gap, a deleted last entry a gap before the next one;
--   prev  the id of the entry before it in its stream ('0-0' for the first), which an XDEL does not change;
-- and copies it, with its stream's name, to the journal's feed `<prefix>:{journal}:feed`, which the sealer
-- reads, hashes (SHA-256), seals in a signed block and trims. The entry's id in its stream is its id in the
-- feed: the feed's ids only grow, so every stream's do too, and a sealed leaf names the very entry.
-- The feed is one key beside the script's slot, like the budgets' keys of open_challenge (one Redis; Redis
-- Cluster is not supported yet, decision 0019).
-- A stream whose entries the archive holds may have been dropped from Redis (decision 0037): its tail
-- `<stream>:tail` (seq, prev, through) then says where its numbering stands, and the stream made again
-- carries on from there (XSETID keeps its count of entries added).
local function journal_append(stream, entry)
  local seq, prev, resumed = 1, '0-0', false
  if redis.call('EXISTS', stream) == 1 then
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'entries-added' then seq = info[i + 1] + 1 end
      if info[i] == 'last-generated-id' then prev = info[i + 1] end
    end
  else
    local tail = redis.call('HMGET', stream .. ':tail', 'seq', 'prev')
    if tail[1] then seq, prev, resumed = tonumber(tail[1]) + 1, tail[2], true end
  end
  local fields = {}
  for i = 1, #entry do fields[i] = entry[i] end
  fields[#fields + 1] = 'seq'
  fields[#fields + 1] = tostring(seq)
  fields[#fields + 1] = 'prev'
  fields[#fields + 1] = prev
  local feed = string.match(stream, '^(.-):{') .. ':{journal}:feed'
  local id = redis.call('XADD', feed, '*', 'stream', stream, unpack(fields))
  redis.call('XADD', stream, id, unpack(fields))
  if resumed then redis.call('XSETID', stream, id, 'ENTRIESADDED', seq) end
  return id
end
