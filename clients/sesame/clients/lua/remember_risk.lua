-- Remember what a VERIFIED challenge teaches about its user, in one step (docs/risk.md). Record_verification
-- does the same in the decision's step (decision 0032); this script feeds a memory directly (tests, tools).
-- KEYS[1..5] payees, added, ips, devices, ops (sorted sets: member -> unix ms), KEYS[6] amounts (list): all
-- in the user's {s:<n>} slot.
-- ARGV[1] the instant (unix ms), ARGV[2] retention (ms), ARGV[3..8] the caps of the five sets and the list,
-- ARGV[9..13] the member for each set ('' for none), ARGV[14] the amount ("<currency>:<minor>", '' for none).
--#include _risk_memory.lua
risk_remember(KEYS, ARGV)
return 1
