-- Out of memory (maxmemory, noeviction), Redis refuses a script's first write when that write may grow
-- memory, and lets every later one pass, so that a step is never cut half-way: a step whose first write
-- frees (a ZREMRANGEBYSCORE, a DEL, an XACK) grows Redis past maxmemory by everything it writes after it,
-- every time it is called (decisions 0109, 0111). A step whose growth must be refused out of memory calls
-- this before its first write.

-- Refuse the step out of memory, before it wrote anything: SETRANGE of nothing, a write Redis refuses out of
-- memory (OOM: UNAVAILABLE, retry later) and which with memory changes nothing. On a key that is no string
-- its WRONGTYPE, like any refusal but OOM (a read-only replica's), is not this check's to answer.
local function refuse_out_of_memory(key)
  local reply = redis.pcall('SETRANGE', key, 0, '')
  if type(reply) == 'table' and reply.err and string.sub(reply.err, 1, 4) == 'OOM ' then
    error(reply)
  end
end
