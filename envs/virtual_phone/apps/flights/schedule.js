// The flights on offer: a fixed timetable for a few routes, a deterministic one for the rest,
// so every search for the same route and date shows the same flights.
const TIMETABLE = {
  'SFO-JFK': [['VA123', '08:00', '16:30', 289], ['VA311', '12:15', '20:45', 249],
              ['VA587', '18:40', '03:05', 199]],
  'JFK-SFO': [['VA124', '07:30', '11:05', 279], ['VA312', '14:00', '17:35', 239]],
  'LHR-CDG': [['VA401', '09:10', '11:25', 119], ['VA405', '16:45', '19:00', 99]],
};

function schedule(origin, destination, date) {
  const fixed = TIMETABLE[`${origin}-${destination}`];
  if (fixed) {
    return fixed.map(([flight, departs, arrives, price]) => ({flight, departs, arrives, price}));
  }
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
