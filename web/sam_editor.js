// The points-and-boxes editor on SAM Segment (and any node of this pack whose STRING input carries
// the option `grounded_inpaint_editor`): click, right click and drag on the picture, several named
// objects, undo, a larger dialog, and SAM's masks drawn live after every edit.
//
// Only the frontend's documented extension API is used: app.registerExtension with
// beforeRegisterNodeDef and nodeCreated, node.addDOMWidget, node methods of the litegraph API
// (getInputNode, widgets, properties, onExecuted) and app.api for the server routes. No import of
// the frontend's internals, so a new frontend release does not break it; where the DOM widget is
// not shown (e.g. the experimental Vue nodes) the plain `objects` text input still works.
//
// Everything is stored in image pixels in the node's `objects` text input (saved with the workflow,
// plain JSON in the API format). The maths lives in editor_geometry.js, the editing rules in
// editor_state.js (both tested under Node: tests/js).

import { app } from '../../scripts/app.js'
import {
  backingStore, boxCorners, clientToImage, fitContain, imageToLocal, screenToImageDistance
} from './js/editor_geometry.js'
import { EditorState, colorOf } from './js/editor_state.js'

const EXTENSION = 'GroundedInpaint.SamEditor'
const OPTION = 'grounded_inpaint_editor'
const PREVIEW_ROUTE = '/grounded_inpaint/sam/preview'
const EMBED_ROUTE = '/grounded_inpaint/sam/embed'
const UI_KEY = 'gi_editor'
const PICTURE_PROPERTY = 'grounded_inpaint_picture'
const IMAGE_EXTENSIONS = /\.(png|jpe?g|webp|bmp|gif|tiff?|avif|heic)$/i
const GRAB_PX = 9 // how near (screen pixels) a press must be to grab a point or corner
const DRAG_PX = 4 // how far a press must travel to become a drag
const MIN_BOX_PX = 3
const DETECTION_COLORS = ['#e2e8f0', '#fde68a', '#bfdbfe', '#fecaca', '#d9f99d']
const HINT = 'click: point · right click / Shift+click: negative · drag: box · drag a handle: move · ' +
  'right click a handle / Del: remove · Ctrl+Z / Ctrl+Shift+Z: undo / redo'

/** node type name -> the name of its editor input (filled by beforeRegisterNodeDef). */
const editorInputs = new Map()

// ----------------------------------------------------------------------------- small helpers

function el(tag, className, props = {}) {
  const e = document.createElement(tag)
  if (className) e.className = className
  for (const [k, v] of Object.entries(props)) {
    if (k === 'style') Object.assign(e.style, v)
    else if (k in e) e[k] = v
    else e.setAttribute(k, v)
  }
  return e
}

function apiURL(route) {
  return app.api?.apiURL ? app.api.apiURL(route) : `api${route}`
}

async function postJSON(route, body) {
  const options = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }
  const response = app.api?.fetchApi ? await app.api.fetchApi(route, options) : await fetch(apiURL(route), options)
  let data = {}
  try {
    data = await response.json()
  } catch {
    data = { error: `HTTP ${response.status}` }
  }
  return { status: response.status, data }
}

/** {filename, subfolder, type} of an annotated image name ("sub/x.png [output]"), or null. */
export function parseImageName(value) {
  if (typeof value !== 'string' || !value) return null
  let type = 'input'
  let name = value.trim()
  const m = name.match(/^(.*) \[(input|output|temp)\]$/)
  if (m) {
    name = m[1]
    type = m[2]
  }
  if (!IMAGE_EXTENSIONS.test(name)) return null
  const cut = name.lastIndexOf('/')
  return { filename: name.slice(cut + 1), subfolder: cut >= 0 ? name.slice(0, cut) : '', type }
}

function sameRef(a, b) {
  return !!a && !!b && a.filename === b.filename && (a.subfolder || '') === (b.subfolder || '') && a.type === b.type
}

function inputNode(node, name) {
  const slot = node.inputs?.findIndex((i) => i.name === name) ?? -1
  if (slot < 0) return null
  let source = node.getInputNode?.(slot) ?? null
  for (let hops = 0; source && hops < 16 && source.type === 'Reroute'; hops++) source = source.getInputNode?.(0) ?? null
  return source
}

function injectStyle() {
  if (document.getElementById('gi-sam-editor-style')) return
  const style = el('style', '', { id: 'gi-sam-editor-style' })
  style.textContent = `
  .gi-sam { display: flex; flex-direction: column; gap: 4px; box-sizing: border-box; outline: none;
    font: 12px/1.3 sans-serif; color: var(--input-text, #ddd); min-height: 0; }
  .gi-sam:focus-within { box-shadow: 0 0 0 1px #3d9bff55; }
  .gi-sam-keys { position: absolute; left: 0; top: 0; width: 1px; height: 1px; opacity: 0; border: 0; padding: 0;
    pointer-events: none; }
  .gi-sam-bar { display: flex; flex-wrap: wrap; gap: 3px; align-items: center; }
  .gi-sam-bar button, .gi-sam-bar input { font: inherit; color: inherit; background: var(--comfy-input-bg, #222);
    border: 1px solid var(--border-color, #444); border-radius: 4px; padding: 1px 6px; height: 22px; }
  .gi-sam-bar button:hover { border-color: #888; }
  .gi-sam-bar button:disabled { opacity: 0.4; }
  .gi-sam-bar input { width: 7em; }
  .gi-sam-chip { display: inline-flex; align-items: center; gap: 4px; }
  .gi-sam-chip.active { background: #3a3a3a !important; border-width: 2px !important; }
  .gi-sam-dot { width: 9px; height: 9px; border-radius: 50%; display: inline-block; }
  .gi-sam-stage { position: relative; flex: 1 1 auto; min-height: 80px; background: #111; border-radius: 4px;
    overflow: hidden; touch-action: none; user-select: none; }
  .gi-sam-stage canvas { position: absolute; left: 0; top: 0; width: 100%; height: 100%; cursor: crosshair; }
  .gi-sam-status { min-height: 15px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; opacity: 0.85; }
  .gi-sam-status.error { color: #ff8080; opacity: 1; }
  .gi-sam-hint { font-size: 10.5px; opacity: 0.6; white-space: normal; }
  .gi-sam-dialog { position: fixed; inset: 0; z-index: 10000; background: rgba(0,0,0,0.65); display: flex;
    align-items: center; justify-content: center; }
  .gi-sam-dialog > .gi-sam { width: 92vw; height: 88vh; background: var(--comfy-menu-bg, #202020);
    padding: 10px; border-radius: 8px; border: 1px solid #555; }
  `
  document.head.appendChild(style)
}

// ----------------------------------------------------------------------------- the editor (one per node)

/** The node's editing state, picture, live masks and server calls; shown by one or more views. */
class SamEditor {
  constructor(node, inputName) {
    this.node = node
    this.inputName = inputName
    this.textWidget = node.widgets?.find((w) => w.name === inputName)
    this.state = new EditorState(this.textWidget?.value ?? '')
    this.lastText = this.textWidget?.value ?? ''
    this.views = new Set()
    this.picture = null // {ref, key, image, width, height}
    this.pictureRef = null
    this.preview = null // the last answer, with tinted masks
    this.need = '' // "model" | "embedding" | ""
    this.status = ''
    this.statusError = false
    this.busy = false
    this.inflight = false
    this.dirty = false
    this.gen = 0
    this.pendingEdits = [] // {gen, t0}: edits waiting for their masks to be drawn
    this.stats = { latencies: [], requests: 0, last: null }
    this.state.onChange((_, { committed }) => this.changed(committed))
  }

  // ---------------------------------------------------------------- the stored text

  changed(committed) {
    this.gen++
    if (committed) this.writeText()
    this.renderAll()
    this.requestPreview()
  }

  writeText() {
    if (!this.textWidget) return
    const text = this.state.text()
    this.lastText = text
    if (this.textWidget.value !== text) {
      this.textWidget.value = text
      this.textWidget.callback?.(text)
    }
    this.node.setDirtyCanvas?.(true, true)
  }

  /** Someone else changed the text (a loaded workflow, the text input, ComfyUI's undo): take it. */
  syncFromText() {
    const text = this.textWidget?.value ?? ''
    if (text === this.lastText) return
    this.lastText = text
    const size = this.state.size
    this.state.load(text)
    if (size) this.state.setImageSize(size[0], size[1])
    this.gen++
    this.renderAll()
    this.requestPreview()
  }

  // ---------------------------------------------------------------- the picture

  /** The picture to show: the upstream Load Image's file, else the first image of the last run. */
  wantedPicture() {
    const source = inputNode(this.node, 'image')
    const widget = source?.widgets?.find((w) => w.name === 'image')
    const fromLoader = parseImageName(widget?.value)
    if (fromLoader) return fromLoader
    const saved = this.node.properties?.[PICTURE_PROPERTY]
    return saved && saved.filename ? saved : null
  }

  modelName() {
    const source = inputNode(this.node, 'sam_model')
    const value = source?.widgets?.find((w) => w.name === 'model_name')?.value
    if (typeof value !== 'string' || !value) return null
    const cut = value.indexOf('  (download ')
    return cut > 0 ? value.slice(0, cut) : value
  }

  checkPicture() {
    const ref = this.wantedPicture()
    if (this.pictureChecked && (sameRef(ref, this.pictureRef) || (!ref && !this.pictureRef))) return
    this.pictureChecked = true
    this.pictureRef = ref
    this.preview = null
    this.need = ''
    if (!ref) {
      this.picture = null
      this.setStatus('Connect a Load Image, or run the workflow once, to see the picture.')
      this.renderAll()
      return
    }
    const params = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder || '', type: ref.type })
    const image = new Image()
    const key = `${ref.type}/${ref.subfolder}/${ref.filename}`
    image.onload = () => {
      if (!sameRef(ref, this.pictureRef)) return
      this.picture = { ref, key, image, width: image.naturalWidth, height: image.naturalHeight }
      this.state.setImageSize(image.naturalWidth, image.naturalHeight)
      this.renderAll()
      this.requestPreview()
    }
    image.onerror = () => {
      if (!sameRef(ref, this.pictureRef)) return
      this.picture = null
      this.setStatus(`Cannot show ${ref.filename} (${ref.type}); run the workflow to see its picture.`, true)
      this.renderAll()
    }
    image.src = apiURL(`/view?${params}&t=${Date.now()}`)
  }

  // ---------------------------------------------------------------- live masks

  requestBody() {
    const widget = (name) => this.node.widgets?.find((w) => w.name === name)?.value
    return {
      image: this.picture.ref,
      model: this.modelName(),
      node: String(this.node.id),
      objects: this.state.text(),
      positive_points: widget('positive_points') ?? '',
      negative_points: widget('negative_points') ?? '',
      multimask: widget('multimask') ?? 'auto'
    }
  }

  /** Ask for masks of the current state; one request at a time, the latest state wins. */
  requestPreview() {
    if (!this.picture || this.busy) return
    if (this.state.sizeMismatch()) {
      const [w, h] = this.state.storedSize
      this.preview = null
      this.setStatus(`The objects were placed on a ${w}x${h} picture; this one is ${this.picture.width}x${this.picture.height}. ` +
        'Edit them (or clear them with ✕) to use them here.', true)
      return
    }
    if (this.inflight) {
      this.dirty = true
      return
    }
    this.inflight = true
    this.dirty = false
    const gen = this.gen
    const key = this.picture.key
    const started = performance.now()
    this.stats.requests++
    postJSON(PREVIEW_ROUTE, this.requestBody())
      .then(async ({ status, data }) => {
        if (!this.picture || this.picture.key !== key) return
        if (status === 200) {
          const instances = await Promise.all(data.instances.map((inst) => this.tint(inst)))
          if (this.gen === gen || !this.dirty) {
            this.preview = { ...data, instances, gen }
          }
          this.need = ''
          const total = data.seconds?.total
          this.setStatus(instances.length
            ? `live masks: ${instances.length} · server ${total?.toFixed?.(2) ?? '?'} s · round trip ${((performance.now() - started) / 1000).toFixed(2)} s`
            : 'live masks on: click on the picture')
          this.renderAll()
          this.measureDrawn(gen)
        } else {
          this.need = data.need || ''
          this.preview = this.need ? null : this.preview
          const hint = this.need === 'model'
            ? 'Live masks: run the workflow once to load SAM.'
            : this.need === 'embedding'
              ? 'Live masks: press "compute" (or run the workflow) to encode this picture.'
              : `Live masks: ${data.error || `HTTP ${status}`}`
          this.setStatus(hint, !this.need)
          this.renderAll()
        }
      })
      .catch((e) => this.setStatus(`Live masks: ${e.message || e}`, true))
      .finally(() => {
        this.inflight = false
        if (this.dirty) this.requestPreview()
      })
  }

  /** Compute the picture's SAM embedding on the server (the "compute" button). */
  async computeEmbedding() {
    if (!this.picture || this.busy) return
    this.busy = true
    this.setStatus('Encoding the picture with SAM…')
    this.renderAll()
    try {
      const { status, data } = await postJSON(EMBED_ROUTE, this.requestBody())
      if (status !== 200) {
        this.need = data.need || ''
        this.setStatus(`Compute: ${data.error || `HTTP ${status}`}`, true)
      } else {
        this.need = ''
        this.setStatus(`Encoded in ${Number(data.seconds).toFixed(1)} s.`)
      }
    } catch (e) {
      this.setStatus(`Compute: ${e.message || e}`, true)
    } finally {
      this.busy = false
      this.renderAll()
      if (!this.need) this.requestPreview()
    }
  }

  /** An instance of the answer with its mask as a canvas in its colour. */
  async tint(instance) {
    const [source, index] = instance.source
    const color = source === 'object' ? colorOf(index) : DETECTION_COLORS[index % DETECTION_COLORS.length]
    const picture = new Image()
    picture.src = `data:image/png;base64,${instance.mask}`
    await picture.decode()
    const canvas = document.createElement('canvas')
    canvas.width = picture.naturalWidth
    canvas.height = picture.naturalHeight
    const ctx = canvas.getContext('2d')
    ctx.drawImage(picture, 0, 0)
    ctx.globalCompositeOperation = 'source-in'
    ctx.fillStyle = color
    ctx.fillRect(0, 0, canvas.width, canvas.height)
    return { ...instance, color, canvas }
  }

  noteEdit(t0) {
    this.pendingEdits.push({ gen: this.gen, t0 })
    if (this.pendingEdits.length > 64) this.pendingEdits.shift()
  }

  /** After the masks of generation `gen` are on screen: the time from each edit it answers. */
  measureDrawn(gen) {
    requestAnimationFrame(() => {
      const now = performance.now()
      const done = this.pendingEdits.filter((e) => e.gen <= gen)
      this.pendingEdits = this.pendingEdits.filter((e) => e.gen > gen)
      for (const e of done) {
        const seconds = (now - e.t0) / 1000
        this.stats.latencies.push(seconds)
        this.stats.last = seconds
      }
      if (this.stats.latencies.length > 200) this.stats.latencies.splice(0, this.stats.latencies.length - 200)
    })
  }

  executed(message) {
    const info = message?.[UI_KEY]?.[0]
    if (!info) return
    if (info.image?.filename) {
      this.node.properties = this.node.properties || {}
      this.node.properties[PICTURE_PROPERTY] = info.image
    }
    this.need = ''
    this.checkPicture()
    this.requestPreview()
  }

  setStatus(text, error = false) {
    this.status = text
    this.statusError = error
    for (const view of this.views) view.showStatus()
  }

  renderAll() {
    for (const view of this.views) view.render()
  }

  /** Called on every canvas frame while the node is drawn: follow the text, the picture and the layout. */
  frame() {
    this.syncFromText()
    this.checkPicture()
    for (const view of this.views) view.frame()
  }

  openDialog() {
    const overlay = el('div', 'gi-sam-dialog')
    const view = new EditorView(this, { dialog: true, close: () => close() })
    overlay.appendChild(view.root)
    const close = () => {
      view.destroy()
      overlay.remove()
      this.node.setDirtyCanvas?.(true, true)
    }
    overlay.addEventListener('pointerdown', (e) => {
      if (e.target === overlay) close()
    })
    document.body.appendChild(overlay)
    view.keys.focus({ preventScroll: true })
    const loop = () => {
      if (!overlay.isConnected) return
      view.frame()
      requestAnimationFrame(loop)
    }
    requestAnimationFrame(loop)
    return view
  }

  destroy() {
    for (const view of [...this.views]) view.destroy()
  }
}

// ----------------------------------------------------------------------------- a view (node or dialog)

class EditorView {
  constructor(editor, { dialog = false, close = null } = {}) {
    this.editor = editor
    this.dialog = dialog
    this.close = close
    this.layoutKey = ''
    this.root = el('div', 'gi-sam')
    this.bar = el('div', 'gi-sam-bar')
    this.stage = el('div', 'gi-sam-stage')
    this.canvas = el('canvas')
    // The editor's keys arrive through a read-only text input: ComfyUI leaves keys typed into inputs
    // alone (its own undo and shortcuts listen on the window, some before anything else), and the
    // editor stops them from going further (Delete would otherwise remove the node).
    this.keys = el('input', 'gi-sam-keys', { readOnly: true, tabIndex: -1, 'aria-label': 'points and boxes editor' })
    this.stage.append(this.canvas, this.keys)
    this.statusLine = el('div', 'gi-sam-status')
    this.hint = el('div', 'gi-sam-hint', { textContent: HINT })
    this.root.append(this.bar, this.stage, this.statusLine)
    if (dialog) this.root.append(this.hint)
    else this.root.title = HINT
    this.bind()
    editor.views.add(this)
    this.buildBar()
    this.showStatus()
  }

  destroy() {
    this.editor.views.delete(this)
    this.root.remove()
  }

  // ---------------------------------------------------------------- toolbar

  buildBar() {
    const ed = this.editor
    const s = ed.state
    this.bar.replaceChildren()
    s.objects.forEach((o, i) => {
      const chip = el('button', `gi-sam-chip${i === s.active ? ' active' : ''}`, { title: `select ${o.name}` })
      chip.style.borderColor = colorOf(i)
      const dot = el('span', 'gi-sam-dot')
      dot.style.background = colorOf(i)
      chip.append(dot, document.createTextNode(o.name))
      chip.addEventListener('click', () => s.setActive(i))
      this.bar.appendChild(chip)
    })
    const add = el('button', '', { textContent: '+ object', title: 'a new object (its own instance)' })
    add.addEventListener('click', () => s.addObject())
    this.bar.appendChild(add)
    if (s.active >= 0 && s.objects[s.active]) {
      const name = el('input', '', { value: s.objects[s.active].name, title: 'the active object\'s name (its label)' })
      name.dataset.role = 'name'
      name.addEventListener('change', () => s.renameObject(s.active, name.value))
      name.addEventListener('keydown', (e) => {
        e.stopPropagation()
        if (e.key === 'Enter') name.blur()
      })
      const remove = el('button', '', { textContent: '✕', title: 'remove the active object' })
      remove.addEventListener('click', () => s.removeObject(s.active))
      this.bar.append(name, remove)
    }
    const undo = el('button', '', { textContent: '↶', title: 'undo (Ctrl+Z)', disabled: !s.undoStack.length })
    undo.addEventListener('click', () => s.undo())
    const redo = el('button', '', { textContent: '↷', title: 'redo (Ctrl+Shift+Z)', disabled: !s.redoStack.length })
    redo.addEventListener('click', () => s.redo())
    this.bar.append(undo, redo)
    if (ed.need === 'embedding' || ed.busy) {
      const compute = el('button', '', { textContent: ed.busy ? 'computing…' : 'compute', disabled: ed.busy,
        title: 'encode this picture with the connected SAM model, for live masks' })
      compute.dataset.role = 'compute'
      compute.addEventListener('click', () => ed.computeEmbedding())
      this.bar.appendChild(compute)
    }
    if (this.dialog) {
      const close = el('button', '', { textContent: 'close', title: 'close (Esc)' })
      close.addEventListener('click', () => this.close?.())
      this.bar.appendChild(close)
    } else {
      const open = el('button', '', { textContent: '⤢', title: 'open a larger editor' })
      open.dataset.role = 'open'
      open.addEventListener('click', () => ed.openDialog())
      const json = el('button', '', { textContent: '{ }', title: 'show / hide the stored JSON' })
      json.addEventListener('click', () => {
        if (!ed.textWidget) return
        ed.textWidget.hidden = !ed.textWidget.hidden
        const node = ed.node
        node.setSize?.([node.size[0], Math.max(node.size[1], node.computeSize?.()[1] ?? node.size[1])])
        node.setDirtyCanvas?.(true, true)
      })
      this.bar.append(open, json)
    }
  }

  showStatus() {
    this.statusLine.textContent = this.editor.status
    this.statusLine.classList.toggle('error', this.editor.statusError)
  }

  // ---------------------------------------------------------------- geometry

  /** The drawing area and the picture's fit, in client (viewport) pixels.
   *
   * ComfyUI shows DOM widgets with `transform: scale(zoom)`; the bounding rectangle already includes
   * that transform (and the node's size, and the page's layout), so working in client pixels makes the
   * zoom drop out: the canvas's backing store gets one pixel per device pixel of that rectangle, and
   * handles, lines and text keep their size on screen at any zoom. */
  layout() {
    const rect = this.stage.getBoundingClientRect()
    const pic = this.editor.picture
    const fit = pic ? fitContain(rect.width, rect.height, pic.width, pic.height) : fitContain(0, 0, 0, 0)
    return { localW: rect.width, localH: rect.height, rect, zoom: 1, fit }
  }

  toImage(e, g = this.layout()) {
    return clientToImage(e.clientX, e.clientY, g.rect, g.localW, g.localH, g.fit)
  }

  frame() {
    const g = this.layout()
    const key = `${g.rect.width}x${g.rect.height}/${window.devicePixelRatio}`
    if (key !== this.layoutKey) this.render(g)
  }

  // ---------------------------------------------------------------- drawing

  render(g = this.layout()) {
    const ed = this.editor
    const s = ed.state
    this.layoutKey = `${g.rect.width}x${g.rect.height}/${window.devicePixelRatio}`
    const store = backingStore(g.localW, g.localH, g.zoom, window.devicePixelRatio || 1)
    if (this.canvas.width !== store.width) this.canvas.width = store.width
    if (this.canvas.height !== store.height) this.canvas.height = store.height
    const ctx = this.canvas.getContext('2d')
    ctx.setTransform(1, 0, 0, 1, 0, 0)
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height)
    if (this.barKey !== this.barState()) {
      this.barKey = this.barState()
      this.buildBar()
    }
    const pic = ed.picture
    if (!pic || !(g.fit.scale > 0)) return
    ctx.setTransform(store.ratio, 0, 0, store.ratio, 0, 0)
    const { fit } = g
    ctx.imageSmoothingQuality = 'high'
    ctx.drawImage(pic.image, fit.x, fit.y, fit.w, fit.h)
    // live masks
    if (ed.preview) {
      ctx.save()
      ctx.globalAlpha = 0.45
      for (const inst of ed.preview.instances) ctx.drawImage(inst.canvas, fit.x, fit.y, fit.w, fit.h)
      ctx.restore()
      ctx.save()
      ctx.setLineDash([4, 3])
      ctx.lineWidth = 1.5 / g.zoom
      for (const inst of ed.preview.instances) {
        if (inst.source[0] !== 'detection') continue
        const [x0, y0] = imageToLocal(inst.box[0], inst.box[1], fit)
        const [x1, y1] = imageToLocal(inst.box[2], inst.box[3], fit)
        ctx.strokeStyle = inst.color
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0)
        this.label(ctx, inst.label, x0, y0, inst.color, g.zoom)
      }
      ctx.restore()
    }
    // objects: boxes, corners, points (the active object last, on top)
    const order = s.objects.map((_, i) => i).filter((i) => i !== s.active)
    if (s.active >= 0) order.push(s.active)
    const unit = 1 / g.zoom // one screen pixel in local pixels
    for (const i of order) {
      const o = s.objects[i]
      if (!o) continue
      const color = colorOf(i)
      const active = i === s.active
      if (o.box) {
        const [x0, y0] = imageToLocal(o.box[0], o.box[1], fit)
        const [x1, y1] = imageToLocal(o.box[2], o.box[3], fit)
        ctx.lineWidth = (active ? 2.5 : 1.5) * unit
        ctx.strokeStyle = color
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0)
        this.label(ctx, o.name, Math.min(x0, x1), Math.min(y0, y1), color, g.zoom)
        boxCorners(o.box).forEach(([cx, cy], k) => {
          const [lx, ly] = imageToLocal(cx, cy, fit)
          const sel = s.selected && s.selected.object === i && s.selected.kind === 'corner' && s.selected.index === k
          const half = (sel ? 5 : 4) * unit
          ctx.fillStyle = sel ? '#fff' : color
          ctx.fillRect(lx - half, ly - half, 2 * half, 2 * half)
          ctx.lineWidth = unit
          ctx.strokeStyle = '#000'
          ctx.strokeRect(lx - half, ly - half, 2 * half, 2 * half)
        })
      } else if (o.points.length && !o.box) {
        const [px, py] = imageToLocal(o.points[0][0], o.points[0][1], fit)
        this.label(ctx, o.name, px + 8 * unit, py - 18 * unit, color, g.zoom)
      }
      o.points.forEach(([x, y, positive], k) => {
        const [lx, ly] = imageToLocal(x, y, fit)
        const sel = s.selected && s.selected.object === i && s.selected.kind === 'point' && s.selected.index === k
        const r = (sel ? 7 : 6) * unit
        ctx.beginPath()
        ctx.arc(lx, ly, r, 0, Math.PI * 2)
        ctx.fillStyle = positive ? color : '#111'
        ctx.fill()
        ctx.lineWidth = (active ? 2 : 1.5) * unit
        ctx.strokeStyle = positive ? '#fff' : color
        ctx.stroke()
        ctx.strokeStyle = positive ? '#000' : '#fff'
        ctx.lineWidth = 1.5 * unit
        ctx.beginPath()
        ctx.moveTo(lx - 3 * unit, ly)
        ctx.lineTo(lx + 3 * unit, ly)
        if (positive) {
          ctx.moveTo(lx, ly - 3 * unit)
          ctx.lineTo(lx, ly + 3 * unit)
        }
        ctx.stroke()
      })
    }
  }

  barState() {
    const ed = this.editor
    const s = ed.state
    return JSON.stringify([s.objects.map((o) => o.name), s.active, s.undoStack.length > 0, s.redoStack.length > 0, ed.need, ed.busy])
  }

  label(ctx, text, x, y, color, zoom) {
    const unit = 1 / zoom
    ctx.save()
    ctx.font = `${11 * unit}px sans-serif`
    const w = ctx.measureText(text).width + 6 * unit
    const h = 14 * unit
    const top = Math.max(y - h, 0)
    ctx.fillStyle = color
    ctx.globalAlpha = 0.85
    ctx.fillRect(x, top, w, h)
    ctx.globalAlpha = 1
    ctx.fillStyle = '#000'
    ctx.fillText(text, x + 3 * unit, top + 11 * unit)
    ctx.restore()
  }

  // ---------------------------------------------------------------- input

  bind() {
    const ed = this.editor
    const s = ed.state
    const EDITS = new Set(['positive', 'negative', 'removed-point', 'removed-box', 'box', 'moved'])
    // No preventDefault on pointerdown: it would suppress the compatibility mouseup that ComfyUI's
    // change tracker listens for (the workflow's "modified" state and its saved copy for reloads).
    // Preventing mousedown's default instead keeps the focus on the key input and selects no text.
    this.canvas.addEventListener('mousedown', (e) => e.preventDefault())
    this.canvas.addEventListener('pointerdown', (e) => {
      if (!ed.picture) return
      e.stopPropagation()
      this.keys.focus({ preventScroll: true })
      const g = this.layout()
      const [x, y] = this.toImage(e, g)
      const button = e.button === 2 ? 2 : e.button === 0 ? 0 : -1
      const done = s.pointerDown(x, y, {
        button, shift: e.shiftKey || e.altKey, radius: screenToImageDistance(GRAB_PX, 1, { scale: g.fit.scale * g.zoom })
      })
      if (EDITS.has(done)) ed.noteEdit(e.timeStamp)
      if (s.gesture) this.canvas.setPointerCapture?.(e.pointerId)
    })
    this.canvas.addEventListener('pointermove', (e) => {
      const g = this.layout()
      const [x, y] = this.toImage(e, g)
      const perImagePixel = g.fit.scale * g.zoom
      if (s.gesture) {
        e.preventDefault()
        s.pointerMove(x, y, { threshold: DRAG_PX / perImagePixel })
      } else if (ed.picture) {
        this.canvas.style.cursor = s.hitTest(x, y, GRAB_PX / perImagePixel) ? 'move' : 'crosshair'
      }
    })
    const finish = (e) => {
      if (!s.gesture) return
      const g = this.layout()
      const [x, y] = this.toImage(e, g)
      const done = s.pointerUp(x, y, { minBox: MIN_BOX_PX / (g.fit.scale * g.zoom) })
      if (EDITS.has(done)) ed.noteEdit(e.timeStamp)
      this.canvas.releasePointerCapture?.(e.pointerId)
    }
    this.canvas.addEventListener('pointerup', finish)
    this.canvas.addEventListener('pointercancel', () => s.cancelGesture())
    this.canvas.addEventListener('contextmenu', (e) => {
      e.preventDefault()
      e.stopPropagation()
    })
    this.keys.addEventListener('keydown', (e) => {
      const mod = e.ctrlKey || e.metaKey
      let handled = true
      if (e.key === 'Delete' || e.key === 'Backspace') s.deleteSelected()
      else if (mod && (e.key === 'z' || e.key === 'Z') && e.shiftKey) s.redo()
      else if (mod && (e.key === 'z' || e.key === 'Z')) s.undo()
      else if (mod && (e.key === 'y' || e.key === 'Y')) s.redo()
      else if (e.key === 'Escape') {
        if (s.gesture) s.cancelGesture()
        else if (this.dialog) this.close?.()
        else s.selected = null
        this.render()
      } else handled = false
      if (handled || !mod) {
        e.preventDefault()
        e.stopPropagation() // the editor's keys never reach the canvas (Delete would remove the node)
      }
    })
  }
}

// ----------------------------------------------------------------------------- registration

function editorInputName(nodeData) {
  for (const section of ['required', 'optional']) {
    for (const [name, spec] of Object.entries(nodeData?.input?.[section] ?? {})) {
      if (Array.isArray(spec) && spec[0] === 'STRING' && spec[1]?.[OPTION]) return name
    }
  }
  return null
}

function attach(node, inputName) {
  injectStyle()
  const editor = new SamEditor(node, inputName)
  if (!editor.textWidget) return null
  const view = new EditorView(editor)
  const widget = node.addDOMWidget('objects_editor', 'gi_sam_editor', view.root, {
    serialize: false,
    hideOnZoom: true,
    getValue: () => '',
    setValue: () => {},
    getMinHeight: () => 300,
    onDraw: () => editor.frame()
  })
  widget.serialize = false // not a value of the workflow: the objects input holds everything
  editor.textWidget.hidden = true // shown again with the "{ }" button; the plain input where no editor shows
  node.samEditor = editor
  const onRemoved = node.onRemoved
  node.onRemoved = function () {
    editor.destroy()
    return onRemoved?.apply(this, arguments)
  }
  const [w, h] = node.size
  node.setSize?.([Math.max(w, 380), Math.max(h, 600)])
  return editor
}

app.registerExtension({
  name: EXTENSION,

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const inputName = editorInputName(nodeData)
    if (!inputName) return
    editorInputs.set(nodeData.name, inputName)
    const onExecuted = nodeType.prototype.onExecuted
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments)
      this.samEditor?.executed(message)
      return result
    }
  },

  nodeCreated(node) {
    const inputName = editorInputs.get(node.comfyClass ?? node.type)
    if (!inputName) return
    try {
      attach(node, inputName)
    } catch (e) {
      console.error(`[${EXTENSION}] the editor could not be shown; the objects input stays a text input`, e)
    }
  }
})
