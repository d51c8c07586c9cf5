-- As sesame.server.domain.privacy.mask_phone: the country code and the last two digits, nothing else.
local function mask_phone(phone)
  if #phone < 6 then
    return string.rep('*', #phone)
  end
  return string.sub(phone, 1, 3) .. string.rep('*', #phone - 5) .. string.sub(phone, -2)
end
