#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the proof of a challenge verified is kept, once a challenge.
-- Keep the proof of a verified challenge, once: the first proof kept stands for good.
-- Works on the journal alone (it outlives the challenge hash), so a proof can be issued after the purge. The
-- verification journals the `challenge.proof` entry (jti, kid) with its decision and no JWS (decision 0026):
-- the JWS signed later is kept beside the journal. A decision that named no proof gets its entry here.
-- KEYS[1] challenge journal stream (and its tail), KEYS[2] the proof's JWS (both in the user's {s:<n>} slot)
-- ARGV[1] the JWS, ARGV[2] how long it is kept (ms: the retention; GetProof signs the journal's claims again
-- after), ARGV[3 ..] journal field/value pairs of the proof entry (event, time, ids, jti, kid)
-- Returns {'recorded'}, {'exists', <the proof kept earlier>}, {'not_verified'} or {'not_found'}.
-- Once archived, the journal may have left Redis (decision 0037): its tail `<journal>:tail` then says
-- whether the entries that left held a VERIFIED decision and a proof entry.
local journal, stored = KEYS[1], KEYS[2]
local entries = redis.call('XRANGE', journal, '-', '+')
local tail = redis.call('HMGET', journal .. ':tail', 'seq', 'verified', 'named')
if #entries == 0 and not tail[1] then
  return {'not_found'}
end
local verified, named = tail[2] == '1', tail[3] == '1'
for _, entry in ipairs(entries) do
  local fields = {}
  for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
  if fields['event'] == 'challenge.proof' then
    if fields['proof'] then
      return {'exists', fields['proof']}  -- journaled whole, before decision 0026
    end
    named = true
  end
  if fields['event'] == 'challenge.verification' and fields['outcome'] == 'verified' then
    verified = true
  end
end
if not verified then
  return {'not_verified'}
end
local earlier = redis.call('GET', stored)
if earlier then
  return {'exists', earlier}
end
if tonumber(ARGV[2]) > 0 then  -- a retention of 0 keeps none: GetProof signs the journal's claims again
  redis.call('SET', stored, ARGV[1], 'PX', ARGV[2])
end
if not named then
  journal_append(journal, {unpack(ARGV, 3)})
end
return {'recorded'}
