-- Reinstate a user (suspended -> active; an active one's wrong codes and blocks in a row start again): the
-- change of status that enables, refused whole out of memory (its first write, an HSET, may grow: decision
-- 0111). Suspensions and revocations are restrict_user.lua's, which runs out of memory; both are
-- _user_status.lua, where the keys, arguments and replies are.
--#include _journal_hourly.lua
--#include _noops.lua
--#include _user_changes.lua
--#include _user_status.lua
return change_status({reinstate = true})
