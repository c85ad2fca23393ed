// Coordinate maths of the points-and-boxes editor: pure functions, no DOM, no frontend.
//
// Three frames:
//   client  - the browser's viewport pixels of a pointer event (clientX / clientY);
//   local   - CSS pixels of the editor's drawing area before any transform. ComfyUI places DOM
//             widgets with `transform: scale(canvas zoom)`, so one local pixel covers `zoom` client
//             pixels; the element's bounding rectangle is in client pixels, its offsetWidth in local;
//   image   - pixels of the picture (x from the left, y from the top; what is stored and sent).
// The picture is drawn letterboxed ("contain") inside the local drawing area, centred.
// Everything stored is in image pixels, so it does not depend on zoom, device pixel ratio, node
// size or the picture's aspect ratio; only drawing and hit testing go through these functions.

/** The rectangle (local pixels) a `imageW x imageH` picture fills when fitted inside `areaW x areaH`,
 * centred, aspect ratio kept; `scale` = local pixels per image pixel. */
export function fitContain(areaW, areaH, imageW, imageH) {
  if (!(areaW > 0 && areaH > 0 && imageW > 0 && imageH > 0)) {
    return { x: 0, y: 0, w: 0, h: 0, scale: 0 }
  }
  const scale = Math.min(areaW / imageW, areaH / imageH)
  const w = imageW * scale
  const h = imageH * scale
  return { x: (areaW - w) / 2, y: (areaH - h) / 2, w, h, scale }
}

/** Client pixels -> local pixels of an element whose bounding rectangle is `rect` (client pixels)
 * and whose untransformed size is `localW x localH` (offsetWidth / offsetHeight). */
export function clientToLocal(clientX, clientY, rect, localW, localH) {
  const sx = rect.width > 0 ? localW / rect.width : 1
  const sy = rect.height > 0 ? localH / rect.height : 1
  return [(clientX - rect.left) * sx, (clientY - rect.top) * sy]
}

/** Local pixels -> client pixels (the inverse of clientToLocal). */
export function localToClient(lx, ly, rect, localW, localH) {
  const sx = localW > 0 ? rect.width / localW : 1
  const sy = localH > 0 ? rect.height / localH : 1
  return [rect.left + lx * sx, rect.top + ly * sy]
}

/** Local pixels -> image pixels, through the fitted rectangle `fit` (fitContain). */
export function localToImage(lx, ly, fit) {
  if (!(fit.scale > 0)) return [NaN, NaN]
  return [(lx - fit.x) / fit.scale, (ly - fit.y) / fit.scale]
}

/** Image pixels -> local pixels. */
export function imageToLocal(ix, iy, fit) {
  return [fit.x + ix * fit.scale, fit.y + iy * fit.scale]
}

/** Client pixels -> image pixels in one step. */
export function clientToImage(clientX, clientY, rect, localW, localH, fit) {
  const [lx, ly] = clientToLocal(clientX, clientY, rect, localW, localH)
  return localToImage(lx, ly, fit)
}

/** Image pixels -> client pixels in one step. */
export function imageToClient(ix, iy, rect, localW, localH, fit) {
  const [lx, ly] = imageToLocal(ix, iy, fit)
  return localToClient(lx, ly, rect, localW, localH)
}

/** Whether image point (x, y) lies on a `width x height` picture (edges included). */
export function onImage(x, y, width, height) {
  return x >= 0 && y >= 0 && x <= width && y <= height
}

/** (x, y) moved onto the picture (edges included). */
export function clampToImage(x, y, width, height) {
  return [Math.min(Math.max(x, 0), width), Math.min(Math.max(y, 0), height)]
}

/** A coordinate as stored: image pixels rounded to a tenth (finer means nothing to SAM). */
export function roundCoord(v) {
  return Math.round(v * 10) / 10
}

/** How many image pixels `screenPixels` device-independent screen pixels cover, at canvas zoom
 * `zoom` (client pixels per local pixel) and picture scale `fit.scale` (local per image pixel).
 * Handle sizes and the drag threshold are constant on screen, whatever the zoom. */
export function screenToImageDistance(screenPixels, zoom, fit) {
  const perImagePixel = (zoom > 0 ? zoom : 1) * fit.scale
  return perImagePixel > 0 ? screenPixels / perImagePixel : Infinity
}

/** The canvas backing-store size for a drawing area of `localW x localH` local pixels shown at
 * `zoom` on a screen with `devicePixelRatio` dpr: one backing pixel per device pixel (sharp at any
 * zoom), capped so that neither side exceeds `maxSide`. `ratio` = backing pixels per local pixel
 * (the context's transform). */
export function backingStore(localW, localH, zoom, dpr, maxSide = 4096) {
  const wanted = Math.max((zoom > 0 ? zoom : 1) * (dpr > 0 ? dpr : 1), 0.01)
  const cap = Math.max(localW, localH) > 0 ? maxSide / Math.max(localW, localH) : wanted
  const ratio = Math.min(wanted, cap)
  return {
    width: Math.max(1, Math.round(localW * ratio)),
    height: Math.max(1, Math.round(localH * ratio)),
    ratio
  }
}

/** Squared distance between two points. */
export function distance2(ax, ay, bx, by) {
  return (ax - bx) ** 2 + (ay - by) ** 2
}

/** The four corners of an XYXY box, in the order corner indices use:
 * 0 = (x0, y0), 1 = (x1, y0), 2 = (x1, y1), 3 = (x0, y1). */
export function boxCorners(box) {
  const [x0, y0, x1, y1] = box
  return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
}

/** `box` with corner `index` moved to (x, y) (the opposite corner stays); not normalised. */
export function moveCorner(box, index, x, y) {
  const [x0, y0, x1, y1] = box
  switch (index) {
    case 0: return [x, y, x1, y1]
    case 1: return [x0, y, x, y1]
    case 2: return [x0, y0, x, y]
    case 3: return [x, y0, x1, y]
    default: return box.slice()
  }
}

/** An XYXY box with its corners in order (x0 <= x1, y0 <= y1). */
export function normaliseBox(box) {
  const [a, b, c, d] = box
  return [Math.min(a, c), Math.min(b, d), Math.max(a, c), Math.max(b, d)]
}
