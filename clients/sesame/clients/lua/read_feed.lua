#!lua flags=allow-oom
-- Runs out of memory (decision 0132): the sealer reads the feeds while Redis is full; it writes a feed's last
-- id (a key of a few bytes a shard, overwritten) and moves the feed's own, nothing that grows.
-- The sealer's read of one shard's journal feed (decisions 0027, 0044): the feed's frontier, an id no entry
-- appended later can be at or below. Once the sealer has read every shard, it seals the entries below the
-- lowest id a shard can append next (its frontier's millisecond, the next sequence of its residue): none of
-- any shard can come later with an id below it.
-- Where the read takes every entry after the id, the feed's last id is first moved up to Redis's clock
-- (XSETID), so that an idle shard does not hold the others' entries back (and its kept last id
-- `<feed>:last`, see _journal.lua). It is moved to the millisecond's sequence READ_LEAP residues up, not to
-- its first: a shard's entries of that millisecond (a user's and its challenge's, at s and s + 4096) then
-- stay below every shard's next possible id, and a read takes everything appended before it; moved to
-- (ms, c), an idle shard c < s could next append (ms, c + 4096), below the second entry, which waited for the
-- next read (seen in make test). The feed's next entry in that millisecond goes above it (feed_id_after).
-- Where the feed holds `limit` entries or more after the id, the frontier is the last of the first `limit`
-- of them, and nothing is written.
-- The entries themselves are read by the caller after this step (an XRANGE up to the frontier: none at or
-- below it can come later, and none is dropped but by the sealer): a script's reply of thousands of fields
-- made Lua strings and back cost Redis more than the rest of the read (decision 0061). While the feed holds
-- fewer than `limit` entries in all (the sealer keeps up), no entry is read here at all.
-- KEYS[1] the feed (its shard's {s:<n>} slot). ARGV[1] the id after which to read ('' from the start),
-- ARGV[2] at most how many entries.
-- Returns {frontier, the feed's length}: the length (entries not yet let go after their archive, nearly all
-- unsealed) tells the caller how to share a block's read out between the shards (decision 0070).
local feed = KEYS[1]
local shard = tonumber(string.match(feed, '{s:(%d+)}'))
local limit = tonumber(ARGV[2])
local length = redis.call('XLEN', feed)
if length >= limit then
  local entries = redis.call('XRANGE', feed, ARGV[1] == '' and '-' or '(' .. ARGV[1], '+', 'COUNT', limit)
  if #entries == limit then
    return {entries[#entries][1], length}
  end
end
local last = feed_last_id(feed)
-- 2^20 residues: no shard appends a million entries in a millisecond, and the sequence stays near 2^32, far
-- below 2^53, where Lua's numbers stop being exact.
local READ_LEAP = 1048576
local now = string.format('%.0f-%.0f', clock_ms(), READ_LEAP * FEED_RESIDUES + shard)
local last_ms, last_seq = id_numbers(last)
local now_ms, now_seq = id_numbers(now)
if now_ms > last_ms or (now_ms == last_ms and now_seq > last_seq) then
  if redis.call('EXISTS', feed) == 0 then
    redis.call('XADD', feed, now, 'frontier', '1')
    redis.call('XDEL', feed, now)
  else
    redis.call('XSETID', feed, now)
  end
  redis.call('SET', feed .. ':last', now)
  last = now
end
return {last, length}
