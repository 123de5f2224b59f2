-- bench/writes.sh: many writers in one tenant, each request a POST of an opportunity with a
-- random stage and amount (so every write moves a count and a stage total).
-- TOKEN is set by the script's first line (prepended by bench/writes.sh).
local STAGES = { "prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost" }
local headers = { ["Authorization"] = "Bearer " .. TOKEN, ["Content-Type"] = "application/json" }

request = function()
  local body = string.format('{"name": "Bench write", "stage": "%s", "amount": %d.%02d}',
    STAGES[math.random(#STAGES)], math.random(0, 250000), math.random(0, 99))
  return wrk.format("POST", "/api/v2/opportunities", headers, body)
end

response = function(status)
  if status ~= 201 then
    io.stderr:write("status " .. status .. "\n")
  end
end
