-- Journal appends (docs/decisions/0027), put in front of every script: every journal entry goes through
-- journal_append. It adds to the entry, as its last fields:
--   seq   its number in its stream (1, 2, ...), from the stream's count of entries ever added, which an XDEL
--         does not lower: a deleted entry leaves a gap, a deleted last entry a gap before the next one;
--   prev  the id of the entry before it in its stream ('0-0' for the first), which an XDEL does not change;
-- and copies it, with its stream's name, to the feed of its stream's place `<prefix>:{s:<n>}:feed` (the same
-- hash slot: decision 0044), which the sealer reads with every other shard's, hashes (SHA-256), seals in a
-- signed block and trims. The entry's id in its stream is its id in the feed: the feed's ids only grow, so
-- every stream's do too, and a sealed leaf names the very entry. The id is chosen here: Redis's clock in ms,
-- and a sequence that is the shard's number modulo 4096 (FEED_RESIDUES in redis_keys.py), so that no two
-- shards' feeds ever hold the same id and the sealer orders them all by id; a sealer's read moves the feed's
-- last id up to the clock (read_feed.lua), so that no entry appended later has an id it already sealed past.
-- A stream whose entries the archive holds may have been dropped from Redis (decision 0037): its tail
-- `<stream>:tail` (seq, prev, through) then says where its numbering stands, and the stream made again
-- carries on from there (XSETID keeps its count of entries added).
local FEED_RESIDUES = 4096

-- The id after the feed's last one (ms, seq), at Redis's clock `ms`: the first of the millisecond is the
-- shard's number, the next ones follow it by FEED_RESIDUES (the same residue).
local function feed_id_after(last, ms, shard)
  local last_ms, last_seq = string.match(last, '^(%d+)-(%d+)$')
  last_ms, last_seq = tonumber(last_ms), tonumber(last_seq)
  if ms > last_ms then
    return string.format('%.0f-%d', ms, shard)
  end
  return string.format('%.0f-%.0f', last_ms, (math.floor(last_seq / FEED_RESIDUES) + 1) * FEED_RESIDUES + shard)
end

local function feed_last_id(feed)
  if redis.call('EXISTS', feed) == 0 then return '0-0' end
  local info = redis.call('XINFO', 'STREAM', feed)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
  return '0-0'
end

local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function feed_next_id(feed, shard)
  return feed_id_after(feed_last_id(feed), clock_ms(), shard)
end

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
  local place = string.match(stream, '^(.-{s:%d+})')
  local feed = place .. ':feed'
  local id = redis.call('XADD', feed, feed_next_id(feed, tonumber(string.match(place, '{s:(%d+)}$'))),
                        'stream', stream, unpack(fields))
  redis.call('XADD', stream, id, unpack(fields))
  if resumed then redis.call('XSETID', stream, id, 'ENTRIESADDED', seq) end
  return id
end
