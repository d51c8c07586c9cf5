#!lua flags=allow-oom
-- Suspend (the phone lost or stolen) or revoke a user: the changes of status that protect, run out of memory
-- (decision 0111): a suspension is made at once while Redis is full, and its user's open codes are void from
-- it (a Verify compares the user's counts). Bounded: a user moves at most twice (active -> suspended ->
-- revoked, revoked final; a reinstatement, change_user_status.lua, is refused out of memory), and a repeated
-- suspension or revocation is a no-op, journaled for the user's first few of each hour then counted, its
-- request id among the few kept (_noops.lua). The keys, arguments and replies are _user_status.lua's.
--#include _journal_hourly.lua
--#include _noops.lua
--#include _user_changes.lua
--#include _user_status.lua
return change_status({suspend = true, revoke = true})
