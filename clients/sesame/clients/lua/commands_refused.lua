-- Which of the commands Sésame's scripts call (ARGV) the connection's user may not run on a key of Sésame's
-- (KEYS[1]), by Redis's ACL: {} when all are allowed, false where Redis cannot tell (before 7.0). A command a
-- script calls after its first write, refused there (NOPERM), leaves that write behind: Redis does not undo
-- a script that failed half-way (an outside audit revoked XADD: a Start's challenge opened without its SMS).
if not redis.acl_check_cmd then
  return false
end
local refused = {}
for _, command in ipairs(ARGV) do
  -- A container command (XGROUP, XINFO) is not one without its subcommand: not told, not refused.
  local told, allowed = pcall(redis.acl_check_cmd, command, KEYS[1])
  if told and not allowed then
    refused[#refused + 1] = command
  end
end
return refused
