-- Journal the proof of a verified challenge, once: the first proof journaled stands for good.
-- Works on the journal alone (it outlives the challenge hash), so a proof can be issued after the purge.
-- KEYS[1] challenge journal stream (its user's {u:<t>} slot)
-- ARGV[1 ..] journal field/value pairs of the proof entry (event, time, ids, jti, kid, proof)
-- Returns {'recorded'}, {'exists', <the proof journaled earlier>}, {'not_verified'} or {'not_found'}.
local journal = KEYS[1]
local entries = redis.call('XRANGE', journal, '-', '+')
if #entries == 0 then
  return {'not_found'}
end
local verified = false
for _, entry in ipairs(entries) do
  local fields = {}
  for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
  if fields['event'] == 'challenge.proof' then
    return {'exists', fields['proof']}
  end
  if fields['event'] == 'challenge.verification' and fields['outcome'] == 'verified' then
    verified = true
  end
end
if not verified then
  return {'not_verified'}
end
journal_append(journal, ARGV)
return {'recorded'}
