-- Shared by mixed.lua and flood.lua. bench/run.py prepends a generated chunk that defines
--   BENCH_TENANTS = { { id = "<uuid>", token = "<jwt>", opportunities = {ids...}, accounts = {ids...} }, ... }
-- (the tenants in order of popularity rank), and appends report.lua.

-- Every entity's equality filters (the contract's table) with the values the seed writes;
-- "account" stands for one of the tenant's account ids.
ENTITIES = {
  accounts = {
    filters = { industry = { "software", "manufacturing", "retail", "healthcare", "finance",
                             "education", "logistics", "energy", "media", "hospitality" } },
    q = { "acme", "globex", "labs", "wayne", "systems" },
  },
  contacts = {
    filters = { status = { "active", "inactive" }, account_id = "account" },
    q = { "aisha", "khan", "smith", "garcia", "olivia" },
  },
  leads = {
    filters = { status = { "new", "contacted", "qualified", "unqualified", "converted" },
                source = { "web", "referral", "event", "cold%20call", "partner", "ads" } },
    q = { "hooli", "nguyen", "emma", "stark", "park" },
  },
  opportunities = {
    filters = { stage = { "prospecting", "qualification", "proposal", "negotiation",
                          "closed_won", "closed_lost" },
                account_id = "account" },
    q = { "acme", "renewal", "pilot", "migration", "umbrella" },
  },
  activities = {
    filters = { type = { "call", "email", "meeting", "task", "note" },
                status = { "planned", "completed", "cancelled" },
                related_type = { "account", "contact", "lead", "opportunity" } },
    q = { "demo", "follow", "proposal", "review", "intro" },
  },
}
for _, spec in pairs(ENTITIES) do
  spec.keys = {}
  for key in pairs(spec.filters) do spec.keys[#spec.keys + 1] = key end
  table.sort(spec.keys)
end
ENTITY_NAMES = { "accounts", "contacts", "leads", "opportunities", "activities" }

function pick(list) return list[math.random(#list)] end

-- One equality filter of `entity` as "name=value", for `tenant`.
function equality_filter(entity, tenant)
  local spec = ENTITIES[entity]
  local key = pick(spec.keys)
  local values = spec.filters[key]
  local value
  if values == "account" then value = pick(tenant.accounts) else value = pick(values) end
  return key .. "=" .. value
end

-- Headers per tenant: wrk.format() adds Content-Length to the table it is given, so reads and
-- writes must never share one.
for _, tenant in ipairs(BENCH_TENANTS) do
  tenant.read_headers = { ["Authorization"] = "Bearer " .. tenant.token }
  tenant.write_headers = { ["Authorization"] = "Bearer " .. tenant.token,
                           ["Content-Type"] = "application/json" }
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  local seed = tonumber(args[1]) or os.time()
  math.randomseed(seed * 1000 + (thread_number or 0))
  for _ = 1, 10 do math.random() end
end
