// One ticking clock for every countdown on screen.
let now = $state(Date.now());
setInterval(() => (now = Date.now()), 1000);

export const clock = {
  get now() {
    return now;
  },
};

export { timeLeft, urgency } from "./time";
