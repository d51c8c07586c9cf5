#!lua flags=allow-oom
-- Runs out of memory (decision 0132): it frees the archived seals and rewrites the last one's head (a
-- hash). Its first write (XTRIM) frees, so a server ran it out of memory already; the flag says so, and a
-- cluster's bare `#!lua`, which Redis refuses whole out of memory, no longer stands in its place.
-- Let go of what the archive now holds (docs/decisions/0027): the seals up to the last archived block (each
-- shard's feed is trimmed after, one slot per call: decision 0044). That block's head (without its leaves)
-- stays in `{journal}:head`: the next block follows it.
-- KEYS[1] the lease, KEYS[2] the seals stream, KEYS[3] the head hash ({journal} slot).
-- ARGV[1] the holder, ARGV[2] the id of the last archived seal, ARGV[3] the first id to keep,
-- ARGV[4] its block (JSON), ARGV[5] its signature.
-- Returns 'dropped', or 'lost' (nothing written) when the holder no longer has the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'lost'
end
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3])
redis.call('HSET', KEYS[3], 'id', ARGV[2], 'block', ARGV[4], 'signature', ARGV[5])
return 'dropped'
