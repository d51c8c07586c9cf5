#!lua flags=allow-oom
-- Runs out of memory (decision 0132): the sealer indexes the challenges archived while Redis is full; a
-- member and an openings entry once a challenge (a member indexed is not journaled again), and no challenge
-- opens out of memory.
-- Index a user's challenges, once their `challenge.opened` entries are sealed and archived (decision 0036),
-- and journal each new one in the user's openings journal (decision 0042): the index is a finding aid, which
-- a deleted member would silently shorten; the openings journal is numbered, chained, sealed and archived like
-- every journal (journal_append), so a user's bundle is checked against it and a lost member is found anyway.
-- A member already indexed (a block read again after a failure) is not journaled twice.
-- KEYS[1] the user's evidence index (sorted set), KEYS[2] the user's openings journal (stream): the user's slot.
-- ARGV[1] the retention's start (unix ms): older members and older openings entries leave Redis (the archive
-- keeps the entries); ARGV[2] the retention (ms), the index's expiry; then, per challenge: its member
-- ('<challenge id> <transaction id>'), its opening time (unix ms) and that time as journaled (ISO).
-- Returns how many openings were journaled.
local journaled = 0
for i = 3, #ARGV, 3 do
  local member, score, at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('ZADD', KEYS[1], 'NX', score, member) == 1 then
    local space = string.find(member, ' ', 1, true)
    journal_append(KEYS[2], {'event', 'user.challenge', 'at', at,
      'challenge_id', string.sub(member, 1, space - 1), 'transaction_id', string.sub(member, space + 1)})
    journaled = journaled + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
-- The stream itself stays (an empty stream keeps its numbering): the next opening carries on from it.
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[1])
return journaled
