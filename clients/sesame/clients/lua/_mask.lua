-- As sesame.server.domain.privacy.mask_phone: the country code and the last two digits, nothing else.
-- The ITU calling codes of 1 and 2 digits, space-separated; every other is 3 digits (the codes are
-- prefix-free). A string constant, not a table: a table would be built again at every call of the script.
local SHORT_CALLING_CODES = ' 1 7 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 '
  .. '60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98 '
local function mask_phone(phone)
  local kept = 4
  for size = 1, 2 do
    if string.find(SHORT_CALLING_CODES, ' ' .. string.sub(phone, 2, 1 + size) .. ' ', 1, true) then
      kept = size + 1
      break
    end
  end
  if #phone < math.max(6, kept + 3) then
    return string.rep('*', #phone)
  end
  return string.sub(phone, 1, kept) .. string.rep('*', #phone - kept - 2) .. string.sub(phone, -2)
end
