-- Journal a DENY of the risk rules in the user's journal (docs/risk.md, decision 0042): nothing else was
-- written and no SMS sent. Through journal_append, so that the denial is numbered, chained, sealed and
-- archived like every entry, and `journal verify` reports its deletion: it is evidence (what was refused, why,
-- by which rules), not a memory of the rules.
-- KEYS[1] the user's journal stream. ARGV the entry's field/value pairs (the number masked, no code).
-- Returns the entry's id.
local entry = {}
for i = 1, #ARGV do entry[i] = ARGV[i] end
return journal_append(KEYS[1], entry)
