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
-- The feed's last id is kept in `<feed>:last` (written with each entry and by read_feed.lua), one GET where
-- XINFO STREAM would answer the feed's first and last entries whole (decision 0040).
-- Where a stream's numbering stands is kept in its tail `<stream>:tail` (seq: entries ever added, prev: the
-- last id), written with every entry: reading it is one small HMGET, where XINFO STREAM answered the first
-- and last entries whole, each made a Lua table (decision 0040). An XDEL changes neither, as it changes
-- neither of the stream's own counts.
-- A stream whose entries the archive holds may have been dropped from Redis (decision 0037): its tail then
-- also says through which id (`through`), and the stream made again carries on from there (XSETID keeps its
-- count of entries added). Such a stream, one written before tails were kept, or one whose tail expired, is
-- read with XINFO STREAM.

local FEED_RESIDUES = 4096

-- The id after the feed's last one (ms, seq), at Redis's clock `ms`: the first of the millisecond is the
-- shard's number, the next ones follow it by FEED_RESIDUES (the same residue).
-- A stream id ('ms-seq') as the two numbers that order it.
local function id_numbers(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function feed_id_after(last, ms, shard)
  local last_ms, last_seq = id_numbers(last)
  if ms > last_ms then
    return string.format('%.0f-%d', ms, shard)
  end
  return string.format('%.0f-%.0f', last_ms, (math.floor(last_seq / FEED_RESIDUES) + 1) * FEED_RESIDUES + shard)
end

-- The feed's last id: kept beside it; a feed without (none yet, or written by an earlier build) asks XINFO.
local function feed_last_id(feed)
  local kept = redis.call('GET', feed .. ':last')
  if kept then return kept end
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

-- What this call of the script already knows (locals of the script's body, made again by each call: Redis 7
-- forbids globals, and nothing is kept from one call to the next): each stream it appended to (its count
-- and last id, and that it exists), each feed's last id, and Redis's clock, read once: a script is one
-- step, its entries one instant (the ids still only grow, feed_id_after). A second entry of the same step
-- (a verification and its proof, a user's openings) costs its XADDs, SET and HSET only (decision 0061).
local appended, feeds_last, clock_now = {}, {}, nil

local function journal_append(stream, entry)
  local added, prev, resumed
  local known = appended[stream]
  if known then
    added, prev, resumed = known[1], known[2], false
  else
    added, prev, resumed = journal_position(stream)
  end
  local seq = added + 1
  local fields = {}
  for i = 1, #entry do fields[i] = entry[i] end
  fields[#fields + 1] = 'seq'
  fields[#fields + 1] = tostring(seq)
  fields[#fields + 1] = 'prev'
  fields[#fields + 1] = prev
  local place = string.match(stream, '^(.-{s:%d+})')
  local feed = place .. ':feed'
  clock_now = clock_now or clock_ms()
  local id = feed_id_after(feeds_last[feed] or feed_last_id(feed), clock_now,
                           tonumber(string.match(place, '{s:(%d+)}$')))
  redis.call('XADD', feed, id, 'stream', stream, unpack(fields))
  redis.call('SET', feed .. ':last', id)
  redis.call('XADD', stream, id, unpack(fields))
  if resumed then redis.call('XSETID', stream, id, 'ENTRIESADDED', seq) end
  redis.call('HSET', stream .. ':tail', 'seq', seq, 'prev', id)
  feeds_last[feed] = id
  appended[stream] = {seq, id}
  return id
end
