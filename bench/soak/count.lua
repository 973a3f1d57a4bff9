-- wrk script for the soak benchmark: one short request per connection (the run sets
-- "Connection: close"). After the number of responses given after "--", it creates the file
-- given second and goes on; run.sh sends wrk SIGINT once every load has its count, which makes
-- it print its totals and exit (wrk otherwise runs until -d).
local limit, done, marker = 0, 0, nil

function init(args)
  limit = tonumber(args[1]) or 0
  marker = args[2]
end

function response(status, headers, body)
  done = done + 1
  if done == limit and marker then
    local f = io.open(marker, "w")
    if f then f:close() end
  end
end
