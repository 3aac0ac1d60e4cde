// Test-only: the two patch formats the FAKE API server (fakeApiServer.ts) applies, as Kubernetes
// defines them for the fields flatnet patches.
// - JSON merge patch (RFC 7386): objects merge key by key, null deletes a key, anything else
//   (lists included) replaces.
// - Strategic merge patch: the same, except lists that Kubernetes declares with a patch merge key
//   merge element by element on that key (Node status.conditions by `type`, ownerReferences by
//   `uid`). Directives such as `$patch` or `$setElementOrder` are not implemented and refused.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type JsonObject = { [key: string]: Json }

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isJsonObject(patch)) return patch
  const result: JsonObject = isJsonObject(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]
    else result[key] = mergePatch(result[key], value)
  }
  return result
}

/** Patch merge keys of the lists flatnet's patches touch (from the Kubernetes API's patchMergeKey tags). */
const mergeKeys: Record<string, string> = {
  'status.conditions': 'type',
  'metadata.ownerReferences': 'uid',
}

export class PatchError extends Error {
  override name = 'PatchError'
}

export function strategicMergePatch(target: Json | undefined, patch: Json, path = ''): Json {
  if (!isJsonObject(patch)) return patch
  const result: JsonObject = isJsonObject(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) throw new PatchError(`the fake API server does not implement strategic merge patch directive ${key} (at ${path || 'the top'})`)
    const at = path ? `${path}.${key}` : key
    const mergeKey = mergeKeys[at]
    if (value === null) {
      delete result[key]
    } else if (mergeKey && Array.isArray(value)) {
      const merged = Array.isArray(result[key]) ? [...(result[key] as Json[])] : []
      for (const element of value) {
        if (!isJsonObject(element) || typeof element[mergeKey] !== 'string') throw new PatchError(`${at}: every element needs its merge key ${mergeKey}`)
        const index = merged.findIndex((m) => isJsonObject(m) && m[mergeKey] === element[mergeKey])
        if (index >= 0) merged[index] = strategicMergePatch(merged[index], element, at)
        else merged.push(element)
      }
      result[key] = merged
    } else {
      result[key] = strategicMergePatch(result[key], value, at)
    }
  }
  return result
}
