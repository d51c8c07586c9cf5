-- An outbox entry's failed try (record_failed_try.lua for a code, record_failed_notice.lua for a notice;
-- decisions 0033 and 0041): how many times it was handed out, and whether it is given up.

-- The times the entry was delivered to a dispatcher (XPENDING's count; 1 when it is no longer pending).
local function tries_of(outbox, group, entry_id)
  local pending = redis.call('XPENDING', outbox, group, entry_id, entry_id, 1)
  if pending[1] then return tonumber(pending[1][4]) end
  return 1
end

-- Failures after which the provider may have taken the message (dispatching.UNCONFIRMED, decision 0096).
local UNCONFIRMED = {timeout = true, lost = true, partial = true}

-- Why the entry is dead-lettered, or nil to try again (dispatching.given_up): 'expired' (the code or the
-- notice is too old), the provider's final word when no try is allowed any more (allowed = 0), once tries
-- reach allowed 'unconfirmed' after a failure that may have reached the phone, else 'max_tries'.
local function given_up(failure, expired, allowed, tries)
  if failure == 'expired' or expired then return 'expired' end
  if allowed == 0 then return failure end
  if tries >= allowed then return UNCONFIRMED[failure] and 'unconfirmed' or 'max_tries' end
  return nil
end
