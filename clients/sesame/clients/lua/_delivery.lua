-- Delivery states (docs/decisions/0006, 0025, 0030), included where a script notes what became of a message.
-- Reports arrive late, twice, or before the sender recorded its own SENT, so each message only moves forward:
-- pending/queued < sent < delivered | failed | expired, the last three final. The challenge's state is the
-- best news over its messages (all carry the same code): delivered if any was, else sent if any is in flight,
-- else expired, else failed: a failure report from a provider failed over from never hides another's success.

-- `messages` (reference -> state) with the message `key` moved forward to `state`, if that is forward.
local function note_message(messages, key, state)
  local rank = {pending = 0, queued = 0, sent = 1, delivered = 2, failed = 2, expired = 2}
  local before = messages[key]
  if before == nil or rank[state] > (rank[before] or 0) then
    messages[key] = state
  end
end

-- The challenge's delivery state: the best news over its messages; `none` when none has news.
local function best_delivery(messages, none)
  local order = {delivered = 4, sent = 3, expired = 2, failed = 1}
  local delivery, best = none, 0
  for _, s in pairs(messages) do
    if (order[s] or 0) > best then
      best, delivery = order[s], s
    end
  end
  return delivery
end
