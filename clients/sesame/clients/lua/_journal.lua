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
-- Where a stream's numbering stands is kept in its tail `<stream>:tail` (seq: entries ever added, prev: the
-- last id), written with every entry: reading it is one small HMGET, where XINFO STREAM answered the first
-- and last entries whole, each made a Lua table (decision 0040). An XDEL changes neither, as it changes
-- neither of the stream's own counts.
-- A stream whose entries the archive holds may have been dropped from Redis (decision 0037): its tail then
-- also says through which id (`through`), and the stream made again carries on from there (XSETID keeps its
-- count of entries added). Such a stream, one written before tails were kept, or one whose tail expired, is
-- read with XINFO STREAM.

-- The stream's count of entries ever added, its last id, and whether the stream must be made again.
local function journal_position(stream)
  local kept = redis.call('HMGET', stream .. ':tail', 'seq', 'prev', 'through')
  if kept[1] and not kept[3] then
    return tonumber(kept[1]), kept[2], redis.call('EXISTS', stream) == 0
  end
  if redis.call('EXISTS', stream) == 1 then
    local added, last = 0, '0-0'
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'entries-added' then added = info[i + 1] end
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
    return added, last, false
  end
  if kept[1] then
    return tonumber(kept[1]), kept[2], true
  end
  return 0, '0-0', false
end

local function journal_append(stream, entry)
  local added, prev, resumed = journal_position(stream)
  local seq = added + 1
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
  redis.call('HSET', stream .. ':tail', 'seq', seq, 'prev', id)
  return id
end
