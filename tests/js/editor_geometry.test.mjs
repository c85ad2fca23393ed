// node --test tests/js/ : the editor's coordinate maths (web/js/editor_geometry.js).
import assert from 'node:assert/strict'
import test from 'node:test'

import {
  backingStore, boxCorners, clampToImage, clientToImage, clientToLocal, fitContain, imageToClient,
  imageToLocal, localToImage, moveCorner, normaliseBox, roundCoord, screenToImageDistance
} from '../../web/js/editor_geometry.js'

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`)

// What the browser reports for a DOM widget: ComfyUI sets the element's CSS size in canvas units
// (local pixels) and `transform: scale(zoom)` from its top-left corner, so the bounding rectangle
// is the local size times the zoom, at the widget's place on screen.
function widgetRect(left, top, localW, localH, zoom) {
  return { left, top, width: localW * zoom, height: localH * zoom }
}

test('letterboxing a wide and a tall picture', () => {
  const wide = fitContain(300, 300, 400, 200) // bars above and below
  assert.deepEqual(wide, { x: 0, y: 75, w: 300, h: 150, scale: 0.75 })
  const tall = fitContain(300, 300, 100, 400) // bars left and right
  assert.deepEqual(tall, { x: 112.5, y: 0, w: 75, h: 300, scale: 0.75 })
  const exact = fitContain(200, 100, 400, 200)
  assert.deepEqual(exact, { x: 0, y: 0, w: 200, h: 100, scale: 0.5 })
  assert.equal(fitContain(0, 100, 400, 200).scale, 0)
  assert.equal(fitContain(100, 100, 0, 200).scale, 0)
})

test('client -> image -> client is the identity at any zoom, place and aspect ratio', () => {
  for (const zoom of [0.35, 0.8, 1, 1.5, 3.7]) {
    for (const [imageW, imageH] of [[400, 264], [264, 400], [1024, 1024], [3000, 17]]) {
      const [localW, localH] = [340, 260]
      const rect = widgetRect(123.5, 456.25, localW, localH, zoom)
      const fit = fitContain(localW, localH, imageW, imageH)
      for (const [ix, iy] of [[0, 0], [imageW, imageH], [imageW / 3, imageH * 0.7], [17.3, 2.1]]) {
        const [cx, cy] = imageToClient(ix, iy, rect, localW, localH, fit)
        const [bx, by] = clientToImage(cx, cy, rect, localW, localH, fit)
        close(bx, ix, 1e-6)
        close(by, iy, 1e-6)
      }
    }
  }
})

test('a click lands on the same image pixel whatever the zoom', () => {
  // the picture's pixel (100, 50) of a 400x264 picture in a 340x260 widget
  const fit = fitContain(340, 260, 400, 264)
  const target = [100, 50]
  const seen = []
  for (const zoom of [0.6, 1, 2]) {
    const rect = widgetRect(10, 20, 340, 260, zoom)
    // where the pixel shows on screen, computed independently: rect origin + (letterbox + pixel*scale)*zoom
    const clientX = 10 + (fit.x + target[0] * fit.scale) * zoom
    const clientY = 20 + (fit.y + target[1] * fit.scale) * zoom
    seen.push(clientToImage(clientX, clientY, rect, 340, 260, fit))
  }
  for (const [x, y] of seen) {
    close(x, 100, 1e-9)
    close(y, 50, 1e-9)
  }
})

test('the device pixel ratio changes the backing store, not the coordinates', () => {
  const fit = fitContain(340, 260, 400, 264)
  const rect = widgetRect(0, 0, 340, 260, 1.25)
  const a = clientToImage(200, 100, rect, 340, 260, fit)
  for (const dpr of [1, 1.5, 2, 3]) {
    const store = backingStore(340, 260, 1.25, dpr)
    assert.equal(store.width, Math.round(340 * 1.25 * dpr))
    assert.equal(store.height, Math.round(260 * 1.25 * dpr))
    close(store.ratio, 1.25 * dpr)
    // drawing maps image pixels through the same fit, scaled by the store's ratio: the backing pixel
    // of image point a is at (local * ratio), i.e. on the clicked device pixel
    const [lx, ly] = imageToLocal(a[0], a[1], fit)
    close(lx * store.ratio, 200 * dpr, 1e-9)
    close(ly * store.ratio, 100 * dpr, 1e-9)
  }
  const huge = backingStore(2000, 1000, 4, 2, 4096) // capped
  assert.equal(huge.width, 4096)
  assert.equal(huge.height, 2048)
})

test('a resized node keeps clicks on the same picture pixels', () => {
  const image = [400, 264]
  const relative = [0.25, 0.6] // the same place on the picture, in the small and the large node
  for (const [localW, localH] of [[300, 200], [600, 900], [1000, 300]]) {
    const fit = fitContain(localW, localH, ...image)
    const rect = widgetRect(40, 40, localW, localH, 1.3)
    const cx = 40 + (fit.x + relative[0] * fit.w) * 1.3
    const cy = 40 + (fit.y + relative[1] * fit.h) * 1.3
    const [x, y] = clientToImage(cx, cy, rect, localW, localH, fit)
    close(x, 100, 1e-9)
    close(y, 0.6 * 264, 1e-9)
  }
})

test('letterbox bars are off the picture', () => {
  const fit = fitContain(300, 300, 400, 200) // bars 75 px high above and below
  const [x, y] = localToImage(150, 30, fit)
  assert.ok(y < 0 && x > 0)
  assert.deepEqual(clampToImage(x, y, 400, 200), [x, 0])
  assert.deepEqual(clampToImage(-5, 900, 400, 200), [0, 200])
})

test('clientToLocal undoes the widget transform', () => {
  const rect = widgetRect(100, 50, 200, 100, 2)
  assert.deepEqual(clientToLocal(100, 50, rect, 200, 100), [0, 0])
  assert.deepEqual(clientToLocal(500, 250, rect, 200, 100), [200, 100])
  assert.deepEqual(clientToLocal(300, 150, rect, 200, 100), [100, 50])
})

test('handle radii are constant on screen', () => {
  const fit = fitContain(340, 260, 1024, 768)
  const small = screenToImageDistance(8, 0.5, fit)
  const large = screenToImageDistance(8, 2, fit)
  close(small / large, 4)
  close(screenToImageDistance(8, 1, fit) * fit.scale, 8)
  assert.equal(screenToImageDistance(8, 1, { scale: 0 }), Infinity)
})

test('boxes, corners and rounding', () => {
  assert.deepEqual(boxCorners([1, 2, 3, 4]), [[1, 2], [3, 2], [3, 4], [1, 4]])
  assert.deepEqual(moveCorner([1, 2, 3, 4], 0, 0, 0), [0, 0, 3, 4])
  assert.deepEqual(moveCorner([1, 2, 3, 4], 1, 9, 0), [1, 0, 9, 4])
  assert.deepEqual(moveCorner([1, 2, 3, 4], 2, 9, 9), [1, 2, 9, 9])
  assert.deepEqual(moveCorner([1, 2, 3, 4], 3, 0, 9), [0, 2, 3, 9])
  assert.deepEqual(normaliseBox([5, 6, 1, 2]), [1, 2, 5, 6])
  assert.equal(roundCoord(10.26), 10.3)
  assert.equal(roundCoord(-0.04), -0)
})

test('the view works in client pixels: the widget rectangle already carries the zoom', () => {
  // sam_editor.js fits the picture into the stage's bounding rectangle (client pixels) and draws
  // into a backing store of rect * devicePixelRatio; the same picture pixel is hit at every zoom,
  // node size and screen, and drawn on the device pixel that was clicked.
  const [imageW, imageH] = [400, 267]
  for (const zoom of [0.6, 1, 1.5, 2.25]) {
    for (const [localW, localH] of [[400, 312.40625], [260, 500], [800, 200]]) {
      const rect = widgetRect(431.5, 298.25, localW, localH, zoom)
      const fit = fitContain(rect.width, rect.height, imageW, imageH)
      for (const [ix, iy] of [[200, 130], [40, 20], [300, 250], [0, 267]]) {
        const [cx, cy] = imageToClient(ix, iy, rect, rect.width, rect.height, fit)
        // independently: the fit of the unzoomed area, scaled by the zoom, at the rectangle's corner
        const local = fitContain(localW, localH, imageW, imageH)
        close(cx, rect.left + (local.x + ix * local.scale) * zoom, 1e-9)
        close(cy, rect.top + (local.y + iy * local.scale) * zoom, 1e-9)
        const [bx, by] = clientToImage(cx, cy, rect, rect.width, rect.height, fit)
        close(bx, ix, 1e-9)
        close(by, iy, 1e-9)
        for (const dpr of [1, 2]) {
          const store = backingStore(rect.width, rect.height, 1, dpr)
          close(store.ratio, dpr)
          const [lx] = imageToLocal(ix, iy, fit)
          close(lx * store.ratio, (cx - rect.left) * dpr, 1e-9)
        }
      }
    }
  }
})
