-- Journal a notice SMS sent to a user about a change of their own (no code in it), through journal_append,
-- so that it is numbered, chained and sealed like every other entry (decision 0035: a bare XADD was never
-- sealed, and left a gap in the user's numbers that `journal verify` reported once the journal was archived).
-- KEYS[1] the user's journal stream. ARGV the entry's field/value pairs.
-- Returns the entry's id.
local entry = {}
for i = 1, #ARGV do entry[i] = ARGV[i] end
return journal_append(KEYS[1], entry)
