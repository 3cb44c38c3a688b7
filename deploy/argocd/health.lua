-- Argo CD health check for clouddesktop.yc.io DesktopImage.
--
-- It reads what the operator writes: the Ready and Synced conditions (metav1.Condition shape),
-- status.observedGeneration against metadata.generation, and metadata.deletionTimestamp.
--
--   Suspended    Synced says ReconcilePaused (the clouddesktop.yc.io/paused annotation stops cloud calls).
--   Progressing  being deleted; no status or no Ready condition yet; the current generation not yet
--                observed (status or Ready behind metadata.generation); an operation in flight
--                (Copying, Updating, Deleting); a transient failure the operator
--                retries with backoff (Throttled, CloudUnavailable, UpdateFailed, DeleteFailed,
--                ImageStatusUnknown, NamePending);
--                Ready Unknown.
--   Healthy      Ready is True at the current generation.
--   Degraded     Ready is False for a terminal reason (CopyFailed, NameConflict, AdoptionConflict, ...) or
--                one this script does not know: the operator will not fix it alone.
--
-- The message is the Ready condition's "Reason: message"; when Synced is False for another reason (a
-- passing outage while a copy runs), its "Reason: message" follows in parentheses.
--
-- The reason tables follow the operator's own table of reasons and their kinds (its tests compare them).
--
-- Argo CD runs health checks on Lua 5.1 (gopher-lua) with only the base, table and a reduced os library.
-- There is no string library: no string.* call and no method call on a string may appear here ("..",
-- "#", "==" and tostring are fine). Any field may be missing, so every lookup goes through field().

local PAUSED = "ReconcilePaused"
local READY_TYPE = "Ready"
local SYNCED_TYPE = "Synced"

-- Ready reasons while the operator is doing something that will end by itself.
local IN_PROGRESS = {
  Copying = true,
  Updating = true,
  Deleting = true,
}

-- Failures the operator retries on its own, with backoff (a failed update or delete gets a new attempt).
local TRANSIENT = {
  Throttled = true,
  CloudUnavailable = true,
  UpdateFailed = true,
  DeleteFailed = true,
  ImageStatusUnknown = true,
  NamePending = true,
}

-- Failures that stay until a person changes something (the spec, a Secret, a quota, the cloud).
local TERMINAL = {
  CopyFailed = true,
  NameConflict = true,
  AdoptionConflict = true,
  ImageNotFound = true,
  SourceNotFound = true,
  SourceNotReady = true,
  InvalidRequest = true,
  QuotaExceeded = true,
  CredentialsInvalid = true,
  PermissionDenied = true,
  InvalidSpec = true,
  ReconcileError = true,
  NotGranted = true,
  FolderNotGranted = true,
}

-- value[key] when value is a table, else nil: never an error on a missing or odd-typed field.
local function field(value, key)
  if type(value) == "table" then
    return value[key]
  end
  return nil
end

local function text(value)
  if type(value) == "string" then
    return value
  end
  if type(value) == "number" or type(value) == "boolean" then
    return tostring(value)
  end
  return ""
end

local function number(value)
  if type(value) == "number" then
    return value
  end
  if type(value) == "string" then
    return tonumber(value)
  end
  return nil
end

local function find_condition(conditions, wanted)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if field(condition, "type") == wanted then
      return condition
    end
  end
  return nil
end

-- "Reason: message", or whichever of the two is there.
local function describe(condition)
  local reason = text(field(condition, "reason"))
  local message = text(field(condition, "message"))
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  return message
end

-- The Ready description, with Synced's when the last reconcile failed for a different reason.
local function explain(ready, synced)
  local result = describe(ready)
  if result == "" then
    local ready_status = text(field(ready, "status"))
    if ready_status == "" then
      ready_status = "Unknown"
    end
    result = "Ready is " .. ready_status
  end
  if field(synced, "status") == "False" and field(synced, "reason") ~= field(ready, "reason") then
    local extra = describe(synced)
    if extra ~= "" then
      result = result .. " (Synced: " .. extra .. ")"
    end
  end
  return result
end

local function health(object)
  local metadata = field(object, "metadata")
  local status = field(object, "status")
  local conditions = field(status, "conditions")
  local ready = find_condition(conditions, READY_TYPE)
  local synced = find_condition(conditions, SYNCED_TYPE)
  local generation = number(field(metadata, "generation"))

  if field(synced, "reason") == PAUSED then
    return "Suspended", describe(synced)
  end

  if field(metadata, "deletionTimestamp") ~= nil then
    if field(ready, "reason") == "Deleting" then
      return "Progressing", explain(ready, synced)
    end
    local pending = "Pending deletion: waiting for the operator to release the cloud image"
    if ready == nil then
      return "Progressing", pending
    end
    return "Progressing", pending .. "; last reported " .. explain(ready, synced)
  end

  if ready == nil then
    if type(conditions) ~= "table" or conditions[1] == nil then
      return "Progressing", "Waiting for the operator to report status"
    end
    return "Progressing", "Waiting for the operator to set the Ready condition"
  end

  -- The operator has not answered the latest spec yet: whatever Ready says is about an older one.
  if generation ~= nil then
    local observed = nil
    local from_status = number(field(status, "observedGeneration"))
    local from_ready = number(field(ready, "observedGeneration"))
    if from_status ~= nil and from_status < generation then
      observed = from_status
    end
    if from_ready ~= nil and from_ready < generation and (observed == nil or from_ready < observed) then
      observed = from_ready
    end
    if observed ~= nil then
      return "Progressing", "Waiting for the operator to observe generation " .. tostring(generation)
        .. " (observed " .. tostring(observed) .. "); last reported " .. explain(ready, synced)
    end
  end

  local ready_status = field(ready, "status")
  local reason = text(field(ready, "reason"))
  if ready_status == "True" then
    return "Healthy", explain(ready, synced)
  end
  if IN_PROGRESS[reason] or TRANSIENT[reason] then
    return "Progressing", explain(ready, synced)
  end
  if TERMINAL[reason] then
    return "Degraded", explain(ready, synced)
  end
  if ready_status == "False" then
    return "Degraded", explain(ready, synced)
  end
  -- Unknown (or no status at all): the operator has not decided yet.
  return "Progressing", explain(ready, synced)
end

local hs = {}
hs.status, hs.message = health(obj)
return hs
