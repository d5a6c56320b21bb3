// The flights on offer. The app's timetable (its state: app.json's initial_state, or what
// `vphone state set` wrote) lists flights for a route on one date ("SFO-JFK 2026-03-14") or on
// every date ("SFO-JFK"), the dated entry first; any other search gets a deterministic made-up
// schedule, so every search for the same route and date shows the same.
function schedule(timetable, origin, destination, date) {
  const route = `${origin}-${destination}`;
  const listed = (timetable || {})[`${route} ${date}`] || (timetable || {})[route];
  if (listed) return listed.map((f) => ({...f}));
  let h = 7;
  for (const c of `${origin}${destination}${date}`) h = (h * 31 + c.charCodeAt(0)) % 100000;
  const pad = (n) => String(n).padStart(2, '0');
  return [0, 1, 2].map((i) => {
    const dep = (6 + i * 5 + (h % 3)) % 24;
    const length = 1 + ((h >> i) % 7);
    return {
      flight: `VA${100 + ((h + i * 277) % 900)}`,
      departs: `${pad(dep)}:${pad((h * (i + 1)) % 60)}`,
      arrives: `${pad((dep + length) % 24)}:${pad((h * (i + 3)) % 60)}`,
      price: 89 + ((h + i * 53) % 400),
    };
  });
}
