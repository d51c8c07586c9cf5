#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the proof of a challenge verified is kept, once a challenge.
-- Keep the proof of a verified challenge, once: the first proof kept stands for good.
-- Works on the journal alone (it outlives the challenge hash), so a proof can be issued after the purge. The
-- verification journals the `challenge.proof` entry (jti, kid) with its decision and no JWS (decision 0026):
-- the JWS signed later is kept beside the journal. A decision that named no proof gets its entry here.
-- The caller read the journal from its authority (the archive, then what Redis holds after the archive's last:
-- decision 0037) and had the HSM check its VERIFIED decision (0167): it says whether that journal names the
-- proof. Redis's own marks are not asked: a writer who cleared the tail's mark had a second proof entry
-- appended and sealed for good, one who added an entry to a purged journal had a verified challenge answered
-- "not verified" (an outside audit, AW1, AW2).
-- KEYS[1] challenge journal stream (and its tail), KEYS[2] the proof's JWS (both in the user's {s:<n>} slot)
-- ARGV[1] the JWS, ARGV[2] how long it is kept (ms: the retention; GetProof signs the journal's claims again
-- after), ARGV[3] '1' when the journal names the proof already, ARGV[4 ..] journal field/value pairs of the
-- proof entry (event, time, ids, jti, kid)
-- Returns {'recorded'}, {'exists', <the proof kept earlier>} or {'not_found'} (the journal left Redis whole:
-- nowhere to keep the proof beside it; every entry journaled writes the tail, which goes with the purge, so a
-- stream without one is none Sésame keeps).
local journal, stored = KEYS[1], KEYS[2]
local tail = journal .. ':tail'
if redis.call('EXISTS', tail) == 0 then
  return {'not_found'}
end
local earlier = redis.call('GET', stored)
if earlier then
  return {'exists', earlier}
end
if tonumber(ARGV[2]) > 0 then  -- a retention of 0 keeps none: GetProof signs the journal's claims again
  redis.call('SET', stored, ARGV[1], 'PX', ARGV[2])
end
if ARGV[3] == '1' then
  return {'recorded'}
end
-- Named by none when the caller read it: unless a GetProof racing this one journaled it since (in the stream,
-- or noted in the tail, `proof`, which outlives the stream's drop: the JWS kept stops the next call only while
-- it lives, not at all with a retention of 0, and it may expire before the tail; an outside audit, AX2: the
-- same entry appended and sealed twice), the entry is appended.
if redis.call('HGET', tail, 'proof') then
  return {'recorded'}
end
for _, entry in ipairs(redis.call('XRANGE', journal, '-', '+')) do
  for i = 1, #entry[2], 2 do
    if entry[2][i] == 'event' and entry[2][i + 1] == 'challenge.proof' then
      return {'recorded'}
    end
  end
end
journal_append(journal, {unpack(ARGV, 4)})
redis.call('HSET', tail, 'proof', '1')
return {'recorded'}
