#!lua flags=allow-oom
-- Runs out of memory (maxmemory, noeviction): the receipt of a part this worker did not send (sent before a
-- restart, or by another worker) is counted while Redis is full, as record_delivery.lua records the rest,
-- since an SMSC brings a refused receipt again only if its operator set it to (decision 0111).
-- Note one part of a message delivered; how many of its parts are.
-- KEYS[1] the message's delivered part ids (a set, in its {pm:<ref>} slot)
-- ARGV[1] the part's SMSC id, ARGV[2] the message's part count, ARGV[3] until (unix ms), ARGV[4] now (unix ms)
-- Bounded: a message has a known part count, and the set holds at most that many ids; an id beyond it (a
-- part sent again under a new id, or whoever replays receipts) is not added, only answered the count. Each
-- id counts once.
local delivered = KEYS[1]
local id, parts = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', delivered, id) == 0 and redis.call('SCARD', delivered) < parts then
  redis.call('SADD', delivered, id)
  expire_at(delivered, ARGV[3], ARGV[4])
end
return redis.call('SCARD', delivered)
