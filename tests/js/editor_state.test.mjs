// node --test tests/js/ : the editor's objects, gestures and undo (web/js/editor_state.js).
import assert from 'node:assert/strict'
import test from 'node:test'

import { COLORS, EditorState, MAX_OBJECTS, colorOf, parseObjectsText, serializeObjects } from '../../web/js/editor_state.js'

function editor(text = '') {
  const s = new EditorState(text)
  s.setImageSize(400, 264)
  return s
}

function click(s, x, y, opts = {}) {
  s.pointerDown(x, y, { radius: 6, ...opts })
  return s.pointerUp(x, y)
}

function drag(s, from, to, opts = {}) {
  s.pointerDown(from[0], from[1], { radius: 6, ...opts })
  s.pointerMove((from[0] + to[0]) / 2, (from[1] + to[1]) / 2, { threshold: 3 })
  s.pointerMove(to[0], to[1], { threshold: 3 })
  return s.pointerUp(to[0], to[1])
}

const stored = (s) => JSON.parse(s.text())

test('click adds a positive point, Shift+click and right click a negative one', () => {
  const s = editor()
  assert.equal(click(s, 100, 50), 'positive')
  assert.equal(click(s, 120, 60, { shift: true }), 'negative')
  assert.equal(s.pointerDown(140, 70, { button: 2, radius: 6 }), 'negative')
  assert.deepEqual(stored(s), {
    objects: [{ name: 'object 1', points: [[100, 50, 1], [120, 60, 0], [140, 70, 0]] }], size: [400, 264]
  })
})

test('drag draws the active object\'s box, in order, replacing the old one', () => {
  const s = editor()
  assert.equal(drag(s, [300, 200], [40, 30]), 'box')
  assert.deepEqual(s.objects[0].box, [40, 30, 300, 200])
  assert.equal(drag(s, [10, 10], [50, 60]), 'box')
  assert.deepEqual(s.objects[0].box, [10, 10, 50, 60])
  assert.equal(s.objects.length, 1)
  // a drag that leaves the picture stops at its edge
  drag(s, [390, 250], [900, 900])
  assert.deepEqual(s.objects[0].box, [390, 250, 400, 264])
})

test('a tiny drag is a click, a tiny box is nothing', () => {
  const s = editor()
  s.pointerDown(100, 100, { radius: 6 })
  s.pointerMove(101, 101, { threshold: 3 })
  assert.equal(s.pointerUp(101, 101), 'positive')
  assert.deepEqual(s.objects[0].points, [[100, 100, 1]])
  s.pointerDown(200, 200, { radius: 6 })
  s.pointerMove(205, 200, { threshold: 3 })
  assert.equal(s.pointerUp(200.5, 200), 'cancelled')
  assert.equal(s.objects[0].box, null)
})

test('dragging a point or a corner moves it; the box stays in order', () => {
  const s = editor()
  click(s, 100, 50)
  drag(s, [20, 20], [80, 80])
  assert.equal(drag(s, [101, 51], [150, 90]), 'moved')
  assert.deepEqual(s.objects[0].points[0], [150, 90, 1])
  assert.equal(drag(s, [80, 80], [10, 5]), 'moved') // the bottom-right corner past the top-left one
  assert.deepEqual(s.objects[0].box, [10, 5, 20, 20])
})

test('right click on a handle removes it; Delete removes the selection', () => {
  const s = editor()
  click(s, 100, 50)
  click(s, 200, 60)
  drag(s, [20, 20], [80, 80])
  assert.equal(s.pointerDown(202, 61, { button: 2, radius: 6 }), 'removed-point')
  assert.deepEqual(s.objects[0].points, [[100, 50, 1]])
  assert.equal(s.pointerDown(80, 20, { button: 2, radius: 6 }), 'removed-box') // a corner
  assert.equal(s.objects[0].box, null)
  click(s, 100, 50) // selects the point (no new point on a handle)
  assert.deepEqual(s.selected, { object: 0, kind: 'point', index: 0 })
  assert.equal(s.deleteSelected(), 'removed-point')
  assert.deepEqual(s.objects[0].points, [])
  assert.equal(s.deleteSelected(), null)
})

test('undo and redo whole edits; a drag is one step', () => {
  const s = editor()
  click(s, 100, 50)
  drag(s, [20, 20], [80, 80])
  drag(s, [100, 50], [300, 200])
  assert.deepEqual(s.objects[0].points[0], [300, 200, 1])
  assert.ok(s.undo())
  assert.deepEqual(s.objects[0].points[0], [100, 50, 1])
  assert.ok(s.undo())
  assert.equal(s.objects[0].box, null)
  assert.ok(s.redo())
  assert.deepEqual(s.objects[0].box, [20, 20, 80, 80])
  click(s, 5, 5) // a new edit drops the redo steps
  assert.equal(s.redo(), false)
  while (s.undo());
  assert.equal(s.text(), '')
})

test('Escape during a drag puts things back', () => {
  const s = editor()
  drag(s, [20, 20], [80, 80])
  s.pointerDown(80, 80, { radius: 6 })
  s.pointerMove(200, 200, { threshold: 3 })
  s.cancelGesture()
  assert.deepEqual(s.objects[0].box, [20, 20, 80, 80])
})

test('several objects, each with its own colour and name; handles of the active one first', () => {
  const s = editor()
  drag(s, [10, 10], [100, 100])
  s.addObject()
  drag(s, [100, 100], [90, 90]) // a press on another object's handle grabs that handle
  assert.deepEqual(s.objects[0].box, [10, 10, 90, 90])
  assert.equal(s.active, 0)
  s.setActive(1)
  drag(s, [100, 100], [200, 200]) // elsewhere a drag draws the active object's box
  assert.equal(s.objects.length, 2)
  assert.deepEqual(s.objects[1].box, [100, 100, 200, 200])
  drag(s, [90, 90], [100, 100]) // put object 1's corner back where object 2's starts
  assert.equal(s.active, 0)
  s.setActive(1)
  s.renameObject(1, '  hand   bag ')
  s.renameObject(0, 'dress')
  assert.deepEqual(stored(s).objects.map((o) => o.name), ['dress', 'hand bag'])
  assert.deepEqual(s.hitTest(100, 100, 6), { object: 1, kind: 'corner', index: 0 })
  s.setActive(0)
  assert.deepEqual(s.hitTest(100, 100, 6), { object: 0, kind: 'corner', index: 2 })
  assert.equal(colorOf(0), COLORS[0])
  assert.equal(colorOf(COLORS.length + 1), COLORS[1])
  s.removeObject(0)
  assert.deepEqual(stored(s).objects.map((o) => o.name), ['hand bag'])
  assert.ok(s.undo())
  assert.equal(s.objects.length, 2)
})

test('new names do not repeat, and the object count is bounded', () => {
  const s = editor()
  s.addObject()
  s.addObject()
  s.renameObject(0, 'object 3')
  s.addObject()
  assert.deepEqual(s.objects.map((o) => o.name), ['object 3', 'object 2', 'object 4'])
  while (s.objects.length < MAX_OBJECTS) s.addObject()
  assert.equal(s.addObject(), -1)
})

test('nothing happens before the picture is known or off the picture', () => {
  const s = new EditorState()
  assert.equal(s.pointerDown(10, 10), 'no-picture')
  s.setImageSize(400, 264)
  assert.equal(s.pointerDown(-3, 10, { radius: 6 }), 'outside') // a letterbox bar
  assert.equal(s.pointerUp(-3, 10), null)
  assert.equal(s.text(), '')
})

test('the stored text round-trips and is what the Python side reads', () => {
  const text = '{"objects":[{"name":"dress","box":[120,40,380,610],"points":[[250,300,1],[140,90,0]]},' +
    '{"name":"bag","points":[[420.5,330,1]]}],"size":[640,800]}'
  const s = new EditorState(text)
  assert.equal(s.text(), text)
  assert.equal(serializeObjects([], [10, 10]), '')
  const loose = parseObjectsText('[{"box": [50, 60, 10, 20], "points": [{"x": 1, "y": 2, "positive": false}, [3, 4]]}]')
  assert.equal(loose.error, null)
  assert.deepEqual(loose.objects, [{ name: 'object 1', box: [10, 20, 50, 60], points: [[1, 2, 0], [3, 4, 1]] }])
  for (const bad of ['{oops', '{"objects": 3}', '[{"box": [1, 2]}]', '[{"points": [[1, "a"]]}]', '[5]']) {
    assert.ok(parseObjectsText(bad).error, bad)
  }
  const broken = new EditorState('{oops')
  assert.ok(broken.error && broken.objects.length === 0)
})

test('a picture of another size than the stored one is noticed', () => {
  const s = new EditorState('{"objects":[{"name":"a","points":[[1,2,1]]}],"size":[640,800]}')
  s.setImageSize(640, 800)
  assert.equal(s.sizeMismatch(), false)
  s.setImageSize(400, 264)
  assert.equal(s.sizeMismatch(), true)
  click(s, 10, 10) // an edit writes the objects for the picture shown
  assert.equal(s.sizeMismatch(), false)
  assert.deepEqual(stored(s).size, [400, 264])
})

test('listeners hear committed edits and drags in progress', () => {
  const s = editor()
  const heard = []
  s.onChange((_, { committed }) => heard.push(committed))
  drag(s, [10, 10], [100, 100])
  assert.deepEqual(heard, [false, false, true])
})
