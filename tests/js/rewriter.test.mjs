// The slot rewriting inside workerd's HTML stream: the same page whatever chunks the origin's
// body arrives in, text that only looks like a slot left alone, nested slots.
import test from 'node:test';
import assert from 'node:assert/strict';
import { DESKTOP, page, setup, site, slotElement } from './support.mjs';

const PREVIEW = '?fp_preview=hero:camping,promo:reviews'; // FP_DEV=1: forced, so the output is exact

/** The test page; `hero`/`promo` give each slot's attributes added and content (the origin's by default). */
function chunkedPage({ hero = ['', '<h1>Gear <em>for</em> every trail</h1>', '<p>second hero</p>'], promo = ['', '<p>Free shipping on orders over $50.</p>'] } = {}) {
  const [heroAttributes, heroFirst, heroSecond] = hero;
  const [promoAttributes, promoInner] = promo;
  return `<!doctype html><html><head><title>Trailhead</title>
<script>document.write('<div data-fp-slot="hero">in a script</div>');</script>
</head><body>
<!-- <aside data-fp-slot="promo">in a comment</aside> -->
<div class="hero" data-fp-slot="hero"${heroAttributes}>${heroFirst}</div>
<textarea><div data-fp-slot="hero">in a textarea</div></textarea>
<div data-fp-slot="unknown-slot"><p>left alone</p></div>
<section data-fp-slot="hero"${heroAttributes}>${heroSecond}</section>
<p>${'On the trail since 1987. '.repeat(8)}</p>
<aside data-fp-slot="promo"${promoAttributes}>${promoInner}</aside>`;
}

const ORIGINAL = chunkedPage();
const REWRITTEN = chunkedPage({
  hero: [' data-fp-variant="camping"', site.slots.hero.html.camping, site.slots.hero.html.camping],
  promo: [' data-fp-variant="reviews"', site.slots.promo.html.reviews],
});

/** Cut points: every `size` bytes, or just before and inside each of `marks`. */
function cuts(query) {
  if (query.has('size')) {
    const size = Number(query.get('size'));
    return Array.from({ length: Math.ceil(ORIGINAL.length / size) - 1 }, (_, i) => (i + 1) * size);
  }
  return query.getAll('mark').map((mark) => ORIGINAL.indexOf(mark) + Math.floor(mark.length / 2)).sort((a, b) => a - b);
}

/** The test page in the chunks `?size=N` or `?mark=text…` asks for, a millisecond apart. */
async function sendChunked(req, res) {
  const query = new URL(req.url, 'http://origin').searchParams;
  const bytes = Buffer.from(ORIGINAL);
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  let start = 0;
  for (const end of [...cuts(query), bytes.length]) {
    res.write(bytes.subarray(start, end));
    start = end;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  res.end();
}

test('the page is rewritten the same whatever chunks the origin sends it in', async (t) => {
  assert.ok(Buffer.byteLength(ORIGINAL) === ORIGINAL.length, 'the page is ASCII, so cut points are byte offsets');
  const { mf } = await setup(t, { '/page': sendChunked }, { FP_DEV: '1' });
  const chunkings = [
    'size=100000', // one chunk
    'size=1',
    'size=7',
    // slot start tags, an end tag and the comment's opening cut in two
    'mark=data-fp-slot="hero"&mark=</div>&mark=<!--&mark=<aside data-fp-slot="promo">',
    'mark=</section>&mark=</textarea>&mark=</script>',
  ];
  for (const chunking of chunkings) {
    const response = await mf.dispatchFetch(`https://shop.example/page${PREVIEW}&${chunking}`, {
      headers: { 'user-agent': DESKTOP, 'accept-encoding': 'identity' },
    });
    assert.equal(response.headers.get('x-fp-model') !== null, true, chunking);
    assert.equal(await response.text(), REWRITTEN, chunking);
  }
});

test('a slot inside a rewritten slot is neither rewritten nor logged; text that looks like a slot is no slot', async (t) => {
  const nested = '<body><aside data-fp-slot="promo"><p>outer</p><div data-fp-slot="hero">inner</div></aside><p>after</p></body>';
  const lookalikes = `<body><script>var s = '<div data-fp-slot="hero">x</div>';</script><!-- <aside data-fp-slot="promo">c</aside> --><p>end</p></body>`;
  const { origin, mf } = await setup(t, { '/nested': page(nested), '/lookalikes': page(lookalikes) });
  const lookalikeResponse = await mf.dispatchFetch('https://shop.example/lookalikes', { headers: { 'user-agent': DESKTOP } });
  assert.equal(await lookalikeResponse.text(), lookalikes);

  const response = await mf.dispatchFetch('https://shop.example/nested', { headers: { 'user-agent': DESKTOP } });
  const html = await response.text();
  const promo = slotElement(html, 'promo');
  assert.equal(promo.inner, site.slots.promo.html[promo.attributes['data-fp-variant']]);
  assert.ok(html.endsWith('</aside><p>after</p></body>'));
  assert.ok(!html.includes('data-fp-slot="hero"'), 'the nested slot went with the outer slot\'s content');
  // A logged nested hero would travel in promo's batch (same request); the wait covers a late one.
  const decisions = await origin.waitForDecisions(1);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(decisions.map((d) => d.slot), ['promo']);
});
