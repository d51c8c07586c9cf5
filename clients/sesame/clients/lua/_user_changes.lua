-- Whether a user's status and its number changed since a challenge opened, by the order of the steps, not
-- the hosts' clocks (decision 0056): the user counts its changes of status and of number (`status_changes`,
-- `phone_changes`, counted by the change's own step), the opening step wrote the counts it read on the
-- challenge (`user_changes`, '<status>:<number>'). A user written before the counts existed has none (0).

-- `opened` the challenge's `user_changes`, `status_now` and `phone_now` the user's counts (nil: none yet).
-- Returns status_moved, phone_moved; nil when the challenge has no counts (opened before they existed: the
-- caller keeps the rule it was opened under, decision 0054's times).
local function changes_since(opened, status_now, phone_now)
  local status_then, phone_then = string.match(opened or '', '^(%d+):(%d+)$')
  if not status_then then
    return nil
  end
  return (tonumber(status_now or '0') or 0) > tonumber(status_then),
         (tonumber(phone_now or '0') or 0) > tonumber(phone_then)
end
