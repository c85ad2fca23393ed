// The editing state of the points-and-boxes editor: objects, gestures, undo. Pure, no DOM.
//
// The state is what SAM Segment's `objects` input stores (grounded_inpaint/objects.py reads it):
//   {"objects": [{"name": "cup", "box": [x0, y0, x1, y1], "points": [[x, y, 1], [x, y, 0]]}],
//    "size": [width, height]}
// in image pixels. Gestures arrive already converted to image pixels (editor_geometry.js) with
// tolerances in image pixels, so nothing here knows about zoom or screens.
//
// Gestures:
//   left press on empty picture, release without moving   -> positive point (negative with Shift)
//   left press on empty picture and drag                  -> the active object's box
//   left press on a point or a box corner and drag        -> move it (that object becomes active)
//   right click on a point or corner                      -> remove it (a corner removes the box)
//   right click on empty picture                          -> negative point
//   Delete / Backspace                                    -> remove the selected point or box
//   undo / redo                                           -> whole edits (a drag is one edit)

import { boxCorners, clampToImage, distance2, moveCorner, normaliseBox, onImage, roundCoord } from './editor_geometry.js'

/** Object colours, in order (object i gets COLORS[i % COLORS.length]). */
export const COLORS = [
  '#ff4d4d', '#3d9bff', '#36d399', '#ffb020', '#c471ed',
  '#00d2d3', '#ff7eb6', '#a3e635', '#f97316', '#94a3b8'
]
/** The same limits as grounded_inpaint/objects.py (the server refuses more). */
export const MAX_OBJECTS = 32
export const MAX_TOTAL_POINTS = 256
export const MAX_NAME_LENGTH = 64
const HISTORY = 100

export function colorOf(index) {
  return COLORS[((index % COLORS.length) + COLORS.length) % COLORS.length]
}

function finite(v) {
  return typeof v === 'number' && Number.isFinite(v)
}

function cleanName(name) {
  return String(name ?? '').split(/\s+/).filter(Boolean).join(' ').slice(0, MAX_NAME_LENGTH)
}

/** Parse the `objects` text. Never throws: `{objects, size, error}`; on an error the objects are
 * empty and `error` says why (the editor then shows the text and leaves it alone). */
export function parseObjectsText(text) {
  if (text == null || String(text).trim() === '') return { objects: [], size: null, error: null }
  let data
  try {
    data = JSON.parse(String(text))
  } catch (e) {
    return { objects: [], size: null, error: `not valid JSON (${e.message})` }
  }
  let size = null
  if (data && !Array.isArray(data) && typeof data === 'object') {
    if (Array.isArray(data.size) && data.size.length === 2 && data.size.every((v) => finite(v) && v >= 1)) {
      size = [Math.round(data.size[0]), Math.round(data.size[1])]
    }
    data = data.objects ?? []
  }
  if (!Array.isArray(data)) return { objects: [], size: null, error: '"objects" must be a list' }
  const objects = []
  for (const [i, item] of data.entries()) {
    if (!item || typeof item !== 'object' || Array.isArray(item)) {
      return { objects: [], size: null, error: `object ${i + 1} is not an object` }
    }
    const name = cleanName(item.name) || `object ${i + 1}`
    let box = null
    if (item.box != null) {
      if (!Array.isArray(item.box) || item.box.length !== 4 || !item.box.every(finite)) {
        return { objects: [], size: null, error: `object ${i + 1} (${name}): box must be [x0, y0, x1, y1]` }
      }
      box = normaliseBox(item.box)
    }
    const points = []
    for (const p of item.points ?? []) {
      let x, y, label
      if (Array.isArray(p)) {
        ;[x, y, label] = [p[0], p[1], p.length > 2 ? p[2] : 1]
      } else if (p && typeof p === 'object') {
        ;[x, y, label] = [p.x, p.y, 'positive' in p ? (p.positive ? 1 : 0) : (p.label ?? 1)]
      }
      if (!finite(x) || !finite(y) || !(label === 0 || label === 1 || label === true || label === false)) {
        return { objects: [], size: null, error: `object ${i + 1} (${name}): a point must be [x, y, 1 or 0]` }
      }
      points.push([x, y, label === true || label === 1 ? 1 : 0])
    }
    objects.push({ name, box, points })
  }
  return { objects, size, error: null }
}

/** The `objects` text for `objects` placed on a picture of `size` ([w, h] or null); "" when empty. */
export function serializeObjects(objects, size) {
  if (!objects.length) return ''
  const out = {
    objects: objects.map((o) => {
      const entry = { name: o.name }
      if (o.box) entry.box = o.box.map(roundCoord)
      if (o.points.length) entry.points = o.points.map(([x, y, l]) => [roundCoord(x), roundCoord(y), l ? 1 : 0])
      return entry
    })
  }
  if (size) out.size = [size[0], size[1]]
  return JSON.stringify(out)
}

function clone(objects) {
  return objects.map((o) => ({ name: o.name, box: o.box ? o.box.slice() : null, points: o.points.map((p) => p.slice()) }))
}

/** The editor's objects, selection, gesture in progress and undo history. */
export class EditorState {
  constructor(text = '') {
    this.objects = []
    this.size = null // [width, height] of the picture, once known
    this.active = -1 // the object new points and boxes go to
    this.selected = null // {object, kind: 'point' | 'corner', index}
    this.gesture = null
    this.undoStack = []
    this.redoStack = []
    this.error = null
    this.listeners = []
    this.load(text)
  }

  /** Replace everything with the objects of `text` (no undo step: used on load and for outside changes). */
  load(text) {
    const parsed = parseObjectsText(text)
    this.error = parsed.error
    this.objects = parsed.objects
    if (parsed.size && !this.size) this.size = parsed.size
    this.storedSize = parsed.size
    this.active = this.objects.length ? 0 : -1
    this.selected = null
    this.gesture = null
    this.undoStack = []
    this.redoStack = []
  }

  /** The `objects` text of the current state. */
  text() {
    return serializeObjects(this.objects, this.size)
  }

  /** Call `fn(state, {committed})` after every change; committed = false while a drag is in progress. */
  onChange(fn) {
    this.listeners.push(fn)
  }

  _changed(committed = true) {
    if (committed && this.size) this.storedSize = this.size.slice() // the text is written for this picture now
    for (const fn of this.listeners) fn(this, { committed })
  }

  _snapshot() {
    this.undoStack.push({ objects: clone(this.objects), active: this.active })
    if (this.undoStack.length > HISTORY) this.undoStack.shift()
    this.redoStack = []
  }

  totalPoints() {
    return this.objects.reduce((n, o) => n + o.points.length, 0)
  }

  setImageSize(width, height) {
    this.size = [width, height]
  }

  /** Whether the stored objects were placed on a picture of another size than the one shown. */
  sizeMismatch() {
    return !!(this.storedSize && this.size && (this.storedSize[0] !== this.size[0] || this.storedSize[1] !== this.size[1]))
  }

  // ------------------------------------------------------------------ objects

  _newName() {
    const taken = new Set(this.objects.map((o) => o.name))
    let n = this.objects.length + 1
    while (taken.has(`object ${n}`)) n++
    return `object ${n}`
  }

  addObject(name) {
    if (this.objects.length >= MAX_OBJECTS) return -1
    this._snapshot()
    this.objects.push({ name: cleanName(name) || this._newName(), box: null, points: [] })
    this.active = this.objects.length - 1
    this.selected = null
    this._changed()
    return this.active
  }

  removeObject(index) {
    if (!(index >= 0 && index < this.objects.length)) return
    this._snapshot()
    this.objects.splice(index, 1)
    if (this.active >= this.objects.length) this.active = this.objects.length - 1
    this.selected = null
    this._changed()
  }

  renameObject(index, name) {
    const clean = cleanName(name)
    if (!(index >= 0 && index < this.objects.length) || !clean || clean === this.objects[index].name) return
    this._snapshot()
    this.objects[index].name = clean
    this._changed()
  }

  setActive(index) {
    if (index >= 0 && index < this.objects.length && index !== this.active) {
      this.active = index
      this.selected = null
      this._changed(false)
    }
  }

  /** The active object, created when there is none. */
  _activeObject() {
    if (this.active < 0 || this.active >= this.objects.length) {
      this.objects.push({ name: this._newName(), box: null, points: [] })
      this.active = this.objects.length - 1
    }
    return this.objects[this.active]
  }

  // ------------------------------------------------------------------ hit testing

  /** The handle nearest to (x, y) within `radius` image pixels: points before corners, the active
   * object before the others. `{object, kind: 'point' | 'corner', index}` or null. */
  hitTest(x, y, radius) {
    const r2 = radius * radius
    const order = this.objects.map((_, i) => i).sort((a, b) => (b === this.active) - (a === this.active))
    for (const kind of ['point', 'corner']) {
      let best = null
      for (const object of order) {
        const o = this.objects[object]
        const handles = kind === 'point' ? o.points : (o.box ? boxCorners(o.box) : [])
        handles.forEach((h, index) => {
          const d = distance2(x, y, h[0], h[1])
          if (d <= r2 && (!best || d < best.d - 1e-9)) best = { object, kind, index, d }
        })
        if (best && object === this.active) break
      }
      if (best) return { object: best.object, kind: best.kind, index: best.index }
    }
    return null
  }

  // ------------------------------------------------------------------ gestures

  /** A press at image point (x, y). `button` 0 = left, 2 = right; `shift` makes a click negative;
   * `radius` is the handle grab radius in image pixels. Returns what it did. */
  pointerDown(x, y, { button = 0, shift = false, radius = 6 } = {}) {
    if (!this.size) return 'no-picture'
    const hit = this.hitTest(x, y, radius)
    if (button === 2) {
      this.gesture = null
      if (hit) return this._removeHandle(hit)
      if (!onImage(x, y, this.size[0], this.size[1])) return 'outside'
      return this._addPoint(x, y, 0)
    }
    if (button !== 0) return 'ignored'
    if (hit) {
      this.setActive(hit.object)
      this.selected = hit
      this.gesture = { kind: 'move', hit, moved: false }
      this._changed(false)
      return 'grab'
    }
    if (!onImage(x, y, this.size[0], this.size[1])) {
      this.gesture = null
      return 'outside'
    }
    this.gesture = { kind: 'pending', start: [x, y], negative: shift }
    return 'pending'
  }

  /** The pointer moved to image point (x, y) with the button down; `threshold` (image pixels) is how
   * far a press must travel to become a drag. */
  pointerMove(x, y, { threshold = 3 } = {}) {
    const g = this.gesture
    if (!g || !this.size) return null
    const [cx, cy] = clampToImage(x, y, this.size[0], this.size[1])
    if (g.kind === 'pending') {
      if (distance2(x, y, g.start[0], g.start[1]) < threshold * threshold) return null
      this._snapshot()
      this._activeObject()
      g.kind = 'box'
    }
    if (g.kind === 'box') {
      const o = this.objects[this.active]
      o.box = [g.start[0], g.start[1], cx, cy]
      this.selected = { object: this.active, kind: 'corner', index: 2 }
      this._changed(false)
      return 'box'
    }
    if (g.kind === 'move') {
      if (!g.moved) {
        this._snapshot()
        g.moved = true
      }
      const o = this.objects[g.hit.object]
      if (g.hit.kind === 'point') {
        const p = o.points[g.hit.index]
        p[0] = cx
        p[1] = cy
      } else if (o.box) {
        o.box = moveCorner(o.box, g.hit.index, cx, cy)
      }
      this._changed(false)
      return 'move'
    }
    return null
  }

  /** The button was released at image point (x, y). */
  pointerUp(x, y, { minBox = 2 } = {}) {
    const g = this.gesture
    this.gesture = null
    if (!g) return null
    if (g.kind === 'pending') return this._addPoint(g.start[0], g.start[1], g.negative ? 0 : 1)
    if (g.kind === 'box') {
      const o = this.objects[this.active]
      const box = normaliseBox(o.box)
      if (box[2] - box[0] < minBox || box[3] - box[1] < minBox) {
        this.undo(false) // a box too small to mean anything: as if nothing happened
        return 'cancelled'
      }
      o.box = box
      this.selected = null
      this._changed()
      return 'box'
    }
    if (g.kind === 'move') {
      if (!g.moved) return 'selected'
      const o = this.objects[g.hit.object]
      if (g.hit.kind === 'corner' && o.box) {
        const box = normaliseBox(o.box)
        if (box[2] - box[0] < minBox || box[3] - box[1] < minBox) {
          this.undo(false)
          return 'cancelled'
        }
        o.box = box
        this.selected = null
      }
      this._changed()
      return 'moved'
    }
    return null
  }

  /** Abandon the gesture in progress (Escape, pointer lost): a drag is undone. */
  cancelGesture() {
    const g = this.gesture
    this.gesture = null
    if (g && (g.kind === 'box' || (g.kind === 'move' && g.moved))) this.undo(false)
  }

  _addPoint(x, y, label) {
    if (this.totalPoints() >= MAX_TOTAL_POINTS) return 'full'
    this._snapshot()
    const o = this._activeObject()
    o.points.push([x, y, label])
    this.selected = { object: this.active, kind: 'point', index: o.points.length - 1 }
    this._changed()
    return label ? 'positive' : 'negative'
  }

  _removeHandle(hit) {
    const o = this.objects[hit.object]
    this._snapshot()
    if (hit.kind === 'point') o.points.splice(hit.index, 1)
    else o.box = null
    this.active = hit.object
    this.selected = null
    this._changed()
    return hit.kind === 'point' ? 'removed-point' : 'removed-box'
  }

  /** Remove the selected point or box (Delete). */
  deleteSelected() {
    const s = this.selected
    if (!s || !this.objects[s.object]) return null
    return this._removeHandle(s)
  }

  // ------------------------------------------------------------------ history

  undo(redoable = true) {
    const previous = this.undoStack.pop()
    if (!previous) return false
    if (redoable) this.redoStack.push({ objects: clone(this.objects), active: this.active })
    this.objects = previous.objects
    this.active = Math.min(previous.active, this.objects.length - 1)
    this.selected = null
    this.gesture = null
    this._changed()
    return true
  }

  redo() {
    const next = this.redoStack.pop()
    if (!next) return false
    this.undoStack.push({ objects: clone(this.objects), active: this.active })
    this.objects = next.objects
    this.active = Math.min(next.active, this.objects.length - 1)
    this.selected = null
    this._changed()
    return true
  }
}
