#!lua flags=allow-oom
-- Runs out of memory (decision 0132): it frees a closed challenge's journal and writes its small tail. Its
-- first write (DEL) frees, so a server ran it out of memory already; the flag says so, and a cluster's bare
-- `#!lua`, which Redis refuses whole out of memory, no longer stands in its place.
-- Let a closed challenge's journal stream go once the archive holds every entry of it (decision 0037).
-- The entries stay in the archive (segment files, fsync'ed before this runs); Redis keeps only its tail
-- `<stream>:tail`: seq and prev (the numbering goes on if an entry comes later) and through (the last id that
-- left). The tail expires with the challenge hash; once both are gone, the archive alone holds the challenge's
-- journal. (It marked whether the entries that left held a VERIFIED decision and a proof entry, for
-- record_proof: Redis's word, which a writer changed; the caller reads the archive now, AW1.)
-- KEYS[1] the challenge's journal stream, KEYS[2] its tail, KEYS[3] the challenge hash (its user's slot)
-- ARGV[1] the id of the last entry the archive holds (all of the journal's, in the feed's order),
-- ARGV[2] now (unix ms).
-- Returns {'dropped'}; {'gone'} (no stream); {'newer'} (an entry not archived yet: nothing written);
-- {'open', expires_at} (the challenge may still change: kept).
local stream, tail, challenge = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', stream) == 0 then
  return {'gone'}
end
-- The tail read once (decision 0061): where the numbering stands, as journal_position reads it (the stream
-- exists: checked above).
local kept = redis.call('HMGET', tail, 'seq', 'prev', 'through')
local seq, last
if kept[1] and not kept[3] then
  seq, last = tonumber(kept[1]), kept[2]
else
  seq, last = journal_position(stream)  -- _journal.lua
end
local last_ms, last_seq = id_numbers(last)
local held_ms, held_seq = id_numbers(ARGV[1])
if last_ms > held_ms or (last_ms == held_ms and last_seq > held_seq) then
  return {'newer'}
end
local h = redis.call('HMGET', challenge, 'status', 'expires_at')
if h[1] == 'open' and tonumber(h[2]) > tonumber(ARGV[2]) then
  return {'open', h[2]}
end
local expiry = redis.call('PEXPIRETIME', challenge)
if expiry <= 0 then
  redis.call('DEL', stream, tail)  -- the challenge was purged: only the archive keeps its journal now
  return {'dropped'}
end
redis.call('DEL', stream)
redis.call('HSET', tail, 'seq', seq, 'prev', last, 'through', last)
redis.call('PEXPIREAT', tail, expiry)
return {'dropped'}
