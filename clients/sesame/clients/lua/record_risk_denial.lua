-- Journal a DENY of the risk rules in the user's risk journal (docs/risk.md): nothing else was written and no
-- SMS sent. The journal is capped (a caller repeating a denied operation cannot grow it) and expires.
-- KEYS[1] the user's risk journal stream, in the user's {s:<n>} slot.
-- ARGV[1] the cap (entries), ARGV[2] retention (ms), then the entry's field/value pairs.
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(entry))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
