-- On a Redis Cluster only, in front of every script (after its `#!lua`): a script refuses to start on a node
-- whose slot is migrating to another node (decision 0068). Redis checks a script's declared keys before it
-- runs (some on the other node already: TRYAGAIN or ASK, nothing run) but a key the script reaches without
-- declaring it (a journal's feed and tail, a challenge's user, an outbox entry's challenge) only when the
-- script's command reaches it: moved meanwhile, the script stops there with what it wrote before ("non local
-- key"). A key that is not there, on a migrating slot, is Redis's sign of it: this one is never written, so
-- touching it on a migrating node is refused (pcall: the refusal is a value here, not the script's end) and
-- the script answers MIGRATING before its first command. Elsewhere it costs one lookup of a missing key.
-- A script never runs on the node the slot moves to: the client does not follow a script's ASK
-- (redis_cluster.py). So no script is stopped half-way by a migration, wherever its keys are declared.
-- The key is named after the first key's hash tag as Redis reads it (from the first '{' to the first '}'
-- after it, not empty), so it is in the script's slot; a first key without one (never Sésame's) is not guarded.
do
  local first = KEYS[1] or ''
  local open = string.find(first, '{', 1, true)
  local close = open and string.find(first, '}', open + 1, true)
  if close and close > open + 1 then
    local tag = string.sub(first, open, close)
    local here = redis.pcall('EXISTS', tag .. ':slot-moving')
    if type(here) == 'table' and here.err then
      if string.find(here.err, 'non local key', 1, true) then
        return redis.error_reply("MIGRATING the script's slot is moving to another node; not run")
      end
      return here  -- any other refusal, as Redis gave it
    end
  end
end
