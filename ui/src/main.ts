import { mount } from "svelte";
import App from "./App.svelte";
import "./styles.css";
import { tauriBackend } from "./lib/backend";

const target = document.getElementById("app");
if (!target) throw new Error("no #app element");
mount(App, { target, props: { backend: tauriBackend() } });
