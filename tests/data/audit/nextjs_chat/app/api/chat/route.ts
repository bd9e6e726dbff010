import { NextResponse } from "next/server";
import { logTokens } from "@/lib/usage";

const OPENAI_URL = `https://api.openai.com/v1/chat/completions`;
// A comment naming api.openai.com is never a call.

export async function POST(request: Request) {
  const { messages, userId } = await request.json();
  const response = await fetch(OPENAI_URL, { // expect: raw-http-provider-call
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Authorization: `Bearer ${process.env.OPENAI_API_KEY}`, // expect: provider-key-bypass
    },
    body: JSON.stringify({ model: "gpt-4o-mini", messages }),
  });
  const data = await response.json();
  await logTokens(userId, data.usage.prompt_tokens, data.usage.completion_tokens, "USD");
  return NextResponse.json({ reply: data.choices[0].message.content });
}

export async function GET() {
  const models = await fetch("https://api.openai.com/v1/models"); // llmledger: ignore
  return NextResponse.json(await models.json());
}
