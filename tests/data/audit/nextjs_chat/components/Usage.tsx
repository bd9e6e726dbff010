const BRL = /R\$\s?\d+(,\d{2})?/g;
const quote = 'it\'s "quoted"';

export function Usage({ tokens, limit }: { tokens: number; limit: number }) {
  const share = tokens / limit / 2;
  return (
    <p>
      You've used {share}% of today's tokens, don't worry.
      {BRL.test("R$ 10,00") ? quote : null}
    </p>
  );
}

export async function refresh() {
  return fetch( // expect: raw-http-provider-call
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
  );
}
